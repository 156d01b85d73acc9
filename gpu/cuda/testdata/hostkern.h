// hostkern.h runs the CUDA kernels of package kernels on the host, as a
// GPU runs them: every thread of every block, with __syncthreads a real
// barrier and __shared__ memory shared by the block's threads, so that
// block reductions run as they do on a GPU. hostkern_test.go generates a
// C++ file that includes this header, then every kernels/*.cu, then one
// exported launch_<kernel>(grid, block, shmem, params) per kernel, which
// unpacks params (cuLaunchKernel's void**) into the kernel's arguments;
// compiled with g++ -shared -fPIC -ffp-contract=off (NVRTC runs with
// --fmad=false) and loaded with purego by the fake driver.
//
// The threads of a block are fibers on one OS thread (a few instructions
// of assembly switch them on x86-64, ucontext elsewhere): each runs
// until it reaches __syncthreads or returns; when all have reached the
// barrier they go on together. The order in which the fibers of a block
// run between two barriers is shuffled, so a read of shared memory that
// another thread writes without a barrier in between gives wrong results
// rather than the right ones by luck of the order. A barrier that some
// threads of a block reach and others do not (they returned) is reported
// as an error: on a GPU it hangs or corrupts. A memory fault of a kernel
// is reported as the launch's error (hkOnFault below).
//
// What it cannot show: warp-level behaviour (there are no warps), races
// between blocks, and timing; the conformance suite on a GPU checks those.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <csetjmp>
#include <csignal>
#include <cstring>
#include <pthread.h>
#include <sys/mman.h>
#include <ucontext.h>
using std::max;
using std::min;

struct HostDim3 {
	unsigned x, y, z;
};
static HostDim3 blockIdx{0, 0, 0}, threadIdx{0, 0, 0}, blockDim{1, 1, 1}, gridDim{1, 1, 1};
#define __global__
#define __device__
// A __shared__ array is a static of its kernel: one per block, as the
// blocks of a launch run one after another.
#define __shared__ static

static float __int_as_float(int i) {
	float f;
	memcpy(&f, &i, 4);
	return f;
}
static unsigned __float_as_uint(float f) {
	unsigned u;
	memcpy(&u, &f, 4);
	return u;
}
static float __uint_as_float(unsigned u) {
	float f;
	memcpy(&f, &u, 4);
	return f;
}
static float __fsub_rn(float a, float b) { return a - b; }
static float __fadd_rn(float a, float b) { return a + b; }

enum { hkReady, hkBarrier, hkDone };

// Launch errors, returned by launch_<kernel>.
enum {
	hkOK = 0,
	hkBadLaunch = 1,     // an empty grid or a block over 1024 threads
	hkDivergent = 2,     // __syncthreads reached by some threads only
	hkNoMemory = 3,      // no room for the fibers' stacks
	hkFault = 4,         // the kernel touched memory outside its buffers
};

static const size_t hkStack = 256 << 10;
static const unsigned hkMaxThreads = 1024;

static char* hkStacks[hkMaxThreads];
static int hkState[hkMaxThreads];
static unsigned hkCur;
static void (*hkBody)(void*);
static void* hkArg;
static uint64_t hkRand = 0x9E3779B97F4A7C15ull;

static void hkEntry() {
	hkBody(hkArg);
	hkState[hkCur] = hkDone;
}

#if defined(__x86_64__) && defined(__ELF__)
// On x86-64 a fiber switch is hkSwitch: it saves the callee-saved
// registers on the current stack, stores the stack pointer in *from and
// resumes the stack at to; ucontext would make two system calls a switch
// (the signal mask), which the reductions' many barriers feel.
extern "C" void hkSwitch(void** from, void* to);
asm(R"(
	.text
	.p2align 4
	.type hkSwitch, @function
hkSwitch:
	pushq %rbp
	pushq %rbx
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, (%rdi)
	movq %rsi, %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbx
	popq %rbp
	ret
	.size hkSwitch, .-hkSwitch
)");
static void* hkSchedSP;
static void* hkFiberSP[hkMaxThreads];

static void hkStart() {
	hkEntry();
	hkSwitch(&hkFiberSP[hkCur], hkSchedSP);
	__builtin_trap(); // a finished fiber is not resumed
}

static void hkInit(unsigned t) {
	// The frame hkSwitch pops: six registers, then hkStart as the return
	// address, placed so that hkStart starts with the stack aligned as
	// after a call.
	uintptr_t top = ((uintptr_t)hkStacks[t] + hkStack - 64) & ~(uintptr_t)15;
	void** sp = (void**)top;
	*--sp = nullptr; // hkStart's return address: none
	*--sp = (void*)hkStart;
	for (int i = 0; i < 6; i++) *--sp = nullptr;
	hkFiberSP[t] = sp;
}
static void hkResume(unsigned t) { hkSwitch(&hkSchedSP, hkFiberSP[t]); }
static void __syncthreads() {
	hkState[hkCur] = hkBarrier;
	hkSwitch(&hkFiberSP[hkCur], hkSchedSP);
}
#else
static ucontext_t hkSched;
static ucontext_t hkFiber[hkMaxThreads];

static void hkInit(unsigned t) {
	getcontext(&hkFiber[t]);
	hkFiber[t].uc_stack.ss_sp = hkStacks[t];
	hkFiber[t].uc_stack.ss_size = hkStack;
	hkFiber[t].uc_link = &hkSched; // a finished fiber returns to the scheduler
	makecontext(&hkFiber[t], hkEntry, 0);
}
static void hkResume(unsigned t) { swapcontext(&hkSched, &hkFiber[t]); }
static void __syncthreads() {
	hkState[hkCur] = hkBarrier;
	swapcontext(&hkFiber[hkCur], &hkSched);
}
#endif

static uint64_t hkNext() {
	hkRand ^= hkRand << 13;
	hkRand ^= hkRand >> 7;
	hkRand ^= hkRand << 17;
	return hkRand;
}

// hkBlocks runs body(arg) on grid blocks of block threads.
static int hkBlocks(unsigned grid, unsigned block, void (*body)(void*), void* arg) {
	for (unsigned t = 0; t < block; t++) {
		if (hkStacks[t]) continue;
		void* p = mmap(nullptr, hkStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED) return hkNoMemory;
		hkStacks[t] = (char*)p;
	}
	hkBody = body;
	hkArg = arg;
	gridDim = HostDim3{grid, 1, 1};
	blockDim = HostDim3{block, 1, 1};
	unsigned order[hkMaxThreads];
	for (unsigned b = 0; b < grid; b++) {
		blockIdx = HostDim3{b, 0, 0};
		for (unsigned t = 0; t < block; t++) {
			hkInit(t);
			hkState[t] = hkReady;
			order[t] = t;
		}
		for (;;) {
			for (unsigned i = block; i > 1; i--) std::swap(order[i - 1], order[hkNext() % i]);
			for (unsigned i = 0; i < block; i++) {
				hkCur = order[i];
				threadIdx = HostDim3{hkCur, 0, 0};
				hkResume(hkCur);
			}
			unsigned done = 0;
			for (unsigned t = 0; t < block; t++) done += hkState[t] == hkDone;
			if (done == block) break;
			if (done != 0) return hkDivergent;
			for (unsigned t = 0; t < block; t++) hkState[t] = hkReady;
		}
	}
	threadIdx = blockIdx = HostDim3{0, 0, 0};
	return hkOK;
}

// A kernel that reads or writes outside the memory it was given faults on
// a guard page (the fake driver puts one after every allocation). While a
// launch runs, hkOnFault turns a fault on the launching thread into the
// launch's error, with the address, instead of a crash of the test; any
// other fault goes to the handler that was there before (Go's), as
// os/signal documents for non-Go handlers of synchronous signals.
static sigjmp_buf hkFaultJmp;
static volatile sig_atomic_t hkActive;
static pthread_t hkThread;
static void* hkFaultAddr;
static struct sigaction hkOldSegv, hkOldBus;

static void hkOnFault(int sig, siginfo_t* info, void* ctx) {
	if (hkActive && pthread_equal(pthread_self(), hkThread)) {
		hkActive = 0;
		hkFaultAddr = info->si_addr;
		siglongjmp(hkFaultJmp, 1);
	}
	struct sigaction* old = sig == SIGBUS ? &hkOldBus : &hkOldSegv;
	if (old->sa_flags & SA_SIGINFO) {
		old->sa_sigaction(sig, info, ctx);
	} else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
		old->sa_handler(sig);
	} else {
		signal(sig, SIG_DFL);
		raise(sig);
	}
}

// hk_fault_address returns the address of the last launch's fault.
extern "C" uint64_t hk_fault_address() { return (uint64_t)(uintptr_t)hkFaultAddr; }

// hkRun runs body(arg) on grid blocks of block threads, turning a memory
// fault of the kernel into hkFault.
static int hkRun(unsigned grid, unsigned block, void (*body)(void*), void* arg) {
	if (grid == 0 || block == 0 || block > hkMaxThreads) return hkBadLaunch;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = hkOnFault;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	hkThread = pthread_self();
	hkFaultAddr = nullptr;
	sigaction(SIGSEGV, &sa, &hkOldSegv);
	sigaction(SIGBUS, &sa, &hkOldBus);
	int rc = hkFault;
	if (sigsetjmp(hkFaultJmp, 1) == 0) {
		hkActive = 1;
		rc = hkBlocks(grid, block, body, arg);
	}
	hkActive = 0;
	sigaction(SIGSEGV, &hkOldSegv, nullptr);
	sigaction(SIGBUS, &hkOldBus, nullptr);
	return rc;
}
