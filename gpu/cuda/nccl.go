package cuda

import (
	"fmt"
	"sync"
)

// NCCL, the collectives of NVIDIA GPUs, bound at run time like the other
// libraries: libnccl.so.2 from LD_LIBRARY_PATH, the system folders or
// pip's nvidia-nccl-cu13 / nvidia-nccl-cu12 wheel
// (site-packages/nvidia/nccl/lib), or ALEXNET_NCCL. Only a run with
// replicas on CUDA devices loads it. The types and values are those of
// nccl.h (NCCL 2.10 or later: ncclAvg).

var libNCCL = library{
	what: "NCCL", env: "ALEXNET_NCCL", names: []string{"libnccl.so.2"},
	hint: "pip install nvidia-nccl-cu13 (or nvidia-nccl-cu12 for CUDA 12), install libnccl2, or point ALEXNET_NCCL at libnccl.so.2",
}

// ncclUniqueID is ncclUniqueId: { char internal[NCCL_UNIQUE_ID_BYTES]; },
// 128 bytes, passed by value to ncclCommInitRank (on the stack, as the
// System V ABI passes a struct of more than 16 bytes; purego lays it out).
type ncclUniqueID struct {
	Internal [NCCLIDBytes]byte
}

// NCCLIDBytes is NCCL_UNIQUE_ID_BYTES.
const NCCLIDBytes = 128

// NCCLID is the unique id every rank of one NCCL communicator is created
// with: made by one process (NewNCCLID) and sent to the others (by MPI).
type NCCLID [NCCLIDBytes]byte

// ncclResult_t values.
const (
	ncclSuccess         Result = 0
	ncclInvalidArgument Result = 4
	ncclInvalidUsage    Result = 5
	ncclRemoteError     Result = 6
	ncclInProgress      Result = 7
)

// ncclDataType_t and ncclRedOp_t values.
const (
	ncclFloat32 = 7
	ncclSum     = 0
	ncclAvg     = 4
)

// NCCL versions that change what the package may do.
const (
	ncclMinVersion       = 21000 // 2.10: ncclAvg
	ncclMultiRankVersion = 23000 // 2.30: several ranks on one GPU, with NCCL_MULTI_RANK_GPU_ENABLE=1
)

// nccl is libnccl bound.
type nccl struct {
	path    string
	version int // NCCL_VERSION_CODE: 22304 for 2.23.4

	getVersion        func(v *int32) Result
	getErrorString    func(r Result) uintptr
	getUniqueID       func(id *ncclUniqueID) Result
	commInitRank      func(comm *uintptr, nranks int32, id ncclUniqueID, rank int32) Result
	commInitAll       func(comms *uintptr, ndev int32, devlist *int32) Result
	groupStart        func() Result
	groupEnd          func() Result
	allReduce         func(send, recv uint64, count uint64, dtype, op int32, comm, stream uintptr) Result
	commAbort         func(comm uintptr) Result
	commDestroy       func(comm uintptr) Result
	commGetAsyncError func(comm uintptr, async *Result) Result
}

var (
	ncclOnce sync.Once
	nccl0    *nccl
	ncclErr  error
)

// loadNCCL loads NCCL once per process.
func loadNCCL() (*nccl, error) {
	ncclOnce.Do(func() { nccl0, ncclErr = openNCCL(hostEnv, libNCCL) })
	return nccl0, ncclErr
}

func openNCCL(e env, lib library) (*nccl, error) {
	h, path, err := e.open(lib)
	if err != nil {
		return nil, err
	}
	c := &nccl{path: path}
	b := &binder{lib: path, handle: h}
	b.bind(&c.getVersion, "ncclGetVersion")
	b.bind(&c.getErrorString, "ncclGetErrorString")
	b.bind(&c.getUniqueID, "ncclGetUniqueId")
	b.bind(&c.commInitRank, "ncclCommInitRank")
	b.bind(&c.commInitAll, "ncclCommInitAll")
	b.bind(&c.groupStart, "ncclGroupStart")
	b.bind(&c.groupEnd, "ncclGroupEnd")
	b.bind(&c.allReduce, "ncclAllReduce")
	b.bind(&c.commAbort, "ncclCommAbort")
	b.bind(&c.commDestroy, "ncclCommDestroy")
	b.bind(&c.commGetAsyncError, "ncclCommGetAsyncError")
	if b.err != nil {
		return nil, b.err
	}
	var v int32
	if err := c.check(c.getVersion(&v), "ncclGetVersion"); err != nil {
		return nil, err
	}
	c.version = int(v)
	if c.version < ncclMinVersion {
		return nil, fmt.Errorf("cuda: %s is NCCL %s; NCCL 2.10 or later is needed (ncclAvg): %s", path, ncclVersionString(c.version), lib.hint)
	}
	return c, nil
}

// ncclVersionString formats an NCCL_VERSION_CODE: major·1000 + minor·100
// + patch up to 2.8, major·10000 + minor·100 + patch from 2.9 on.
func ncclVersionString(v int) string {
	if v < 20900 {
		return fmt.Sprintf("%d.%d.%d", v/1000, v%1000/100, v%100)
	}
	return fmt.Sprintf("%d.%d.%d", v/10000, v%10000/100, v%100)
}

// check turns an NCCL result into nil or an *Error whose name is
// ncclGetErrorString's text.
func (c *nccl) check(r Result, call string) error {
	if r == ncclSuccess {
		return nil
	}
	e := &Error{Call: call, Code: r, Name: goString(c.getErrorString(r))}
	if e.Name == "" {
		e.Name = fmt.Sprintf("ncclResult %d", int32(r))
	}
	return e
}

// NewNCCLID makes the unique id of a new NCCL communicator
// (ncclGetUniqueId), for a run over several processes: one makes it, MPI
// sends it to the others, and each creates its ranks with
// NewNCCLGroupRanks.
func NewNCCLID() (NCCLID, error) {
	lib, err := loadNCCL()
	if err != nil {
		return NCCLID{}, err
	}
	return lib.newID()
}

func (c *nccl) newID() (NCCLID, error) {
	var id ncclUniqueID
	if err := c.check(c.getUniqueID(&id), "ncclGetUniqueId"); err != nil {
		return NCCLID{}, err
	}
	return NCCLID(id.Internal), nil
}

// NCCLVersion returns the version and path of the NCCL this process
// loads, or why it cannot.
func NCCLVersion() (string, error) {
	lib, err := loadNCCL()
	if err != nil {
		return "", err
	}
	return "NCCL " + ncclVersionString(lib.version) + " " + lib.path, nil
}
