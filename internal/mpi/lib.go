package mpi

import (
	"fmt"
	"unsafe"

	"github.com/alexnet-go/trainer/internal/native"
	"github.com/ebitengine/purego"
)

// LibEnv names the environment variable that, when set, is the only path
// tried for libmpi.
const LibEnv = "ALEXNET_LIBMPI"

// libNames are the libraries tried, in order, when LibEnv is unset: Open
// MPI 3, 4 and 5 all have the soname libmpi.so.40. MPICH's libmpi.so.12
// has another ABI (integer handles) and is not supported.
var libNames = []string{"libmpi.so.40"}

// Open MPI's constants (mpi.h).
const (
	threadFunneled = 1 // MPI_THREAD_FUNNELED
	success        = 0 // MPI_SUCCESS
	maxErrorString = 256
	maxProcName    = 256
)

// lib is libmpi bound. Open MPI's handles (MPI_Comm, MPI_Datatype, …) are
// pointers; its predefined ones are the addresses of global objects
// (MPI_COMM_WORLD is &ompi_mpi_comm_world), found with Dlsym.
type lib struct {
	path string

	commWorld, errorsReturn        uintptr
	tByte, tFloat, tDouble, tInt64 uintptr
	initThread                     func(argc, argv unsafe.Pointer, required int32, provided *int32) int32
	finalize                       func() int32
	commRank, commSize             func(comm uintptr, v *int32) int32
	commSetErrhandler              func(comm, errh uintptr) int32
	commIdup                       func(comm uintptr, newcomm *uintptr, req *uintptr) int32
	iallgather                     func(sendbuf unsafe.Pointer, sendcount int32, sendtype uintptr, recvbuf unsafe.Pointer, recvcount int32, recvtype uintptr, comm uintptr, req *uintptr) int32
	ibcast                         func(buf unsafe.Pointer, count int32, dtype uintptr, root int32, comm uintptr, req *uintptr) int32
	ibarrier                       func(comm uintptr, req *uintptr) int32
	isend                          func(buf unsafe.Pointer, count int32, dtype uintptr, dest, tag int32, comm uintptr, req *uintptr) int32
	irecv                          func(buf unsafe.Pointer, count int32, dtype uintptr, source, tag int32, comm uintptr, req *uintptr) int32
	test                           func(req *uintptr, flag *int32, status unsafe.Pointer) int32
	errorString                    func(code int32, s *byte, n *int32) int32
	libraryVersion, processorName  func(s *byte, n *int32) int32
	version                        string
}

// openLib loads libmpi (LibEnv, else libNames) and binds what the package
// uses. RTLD_GLOBAL: Open MPI's plugins (mca_*.so), which it dlopens
// itself, resolve their symbols against libmpi and its libraries.
func openLib(override string) (*lib, error) {
	return native.First(libNames, LibEnv, override, "libmpi not found", func(name string) (*lib, error) {
		h, err := purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			return nil, fmt.Errorf("dlopen: %v", err)
		}
		l := &lib{path: name}
		b := binder{handle: h}
		b.data(&l.commWorld, "ompi_mpi_comm_world")
		b.data(&l.errorsReturn, "ompi_mpi_errors_return")
		b.data(&l.tByte, "ompi_mpi_byte")
		b.data(&l.tFloat, "ompi_mpi_float")
		b.data(&l.tDouble, "ompi_mpi_double")
		b.data(&l.tInt64, "ompi_mpi_int64_t")
		b.fn(&l.initThread, "MPI_Init_thread")
		b.fn(&l.finalize, "MPI_Finalize")
		b.fn(&l.commRank, "MPI_Comm_rank")
		b.fn(&l.commSize, "MPI_Comm_size")
		b.fn(&l.commSetErrhandler, "MPI_Comm_set_errhandler")
		b.fn(&l.commIdup, "MPI_Comm_idup")
		b.fn(&l.iallgather, "MPI_Iallgather")
		b.fn(&l.ibcast, "MPI_Ibcast")
		b.fn(&l.ibarrier, "MPI_Ibarrier")
		b.fn(&l.isend, "MPI_Isend")
		b.fn(&l.irecv, "MPI_Irecv")
		b.fn(&l.test, "MPI_Test")
		b.fn(&l.errorString, "MPI_Error_string")
		b.fn(&l.libraryVersion, "MPI_Get_library_version")
		b.fn(&l.processorName, "MPI_Get_processor_name")
		if b.err != nil {
			purego.Dlclose(h)
			return nil, fmt.Errorf("%s: %v (is it Open MPI's? MPICH's libmpi is not supported)", name, b.err)
		}
		l.path = native.MappedPath(l.commWorld, name)
		l.version = l.cString(l.libraryVersion, maxErrorString*32)
		return l, nil
	})
}

// binder binds symbols, keeping the first missing one as its error.
type binder struct {
	handle uintptr
	err    error
}

func (b *binder) sym(name string) uintptr {
	if b.err != nil {
		return 0
	}
	p, err := purego.Dlsym(b.handle, name)
	if err != nil {
		b.err = fmt.Errorf("no symbol %s: %v", name, err)
		return 0
	}
	return p
}

// fn registers the C function name into fptr, a pointer to a func variable.
func (b *binder) fn(fptr any, name string) {
	if p := b.sym(name); p != 0 {
		purego.RegisterFunc(fptr, p)
	}
}

// data stores the address of the global object name: an Open MPI
// predefined handle.
func (b *binder) data(h *uintptr, name string) { *h = b.sym(name) }

// cString calls a function that writes a C string and its length.
func (l *lib) cString(f func(s *byte, n *int32) int32, size int) string {
	buf := make([]byte, size)
	var n int32
	if f(&buf[0], &n) != success || n < 0 || int(n) > size {
		return ""
	}
	s := string(buf[:n])
	for len(s) > 0 && (s[len(s)-1] == 0 || s[len(s)-1] == '\n') {
		s = s[:len(s)-1]
	}
	return s
}

// check turns an MPI error code into nil or an error naming the call.
func (l *lib) check(code int32, call string) error {
	if code == success {
		return nil
	}
	buf := make([]byte, maxErrorString)
	var n int32
	msg := fmt.Sprintf("error %d", code)
	if l.errorString(code, &buf[0], &n) == success && n > 0 && int(n) <= len(buf) {
		msg = string(buf[:n])
	}
	return fmt.Errorf("mpi: %s: %s", call, msg)
}
