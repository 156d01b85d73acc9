package cpu

import (
	"syscall"
	"unsafe"
)

// hugePageBytes is the size of a transparent huge page on amd64 and arm64
// Linux, and the least buffer worth advising.
const hugePageBytes = 2 << 20

// adviseHugePages asks the kernel to back v's whole 2 MiB pages with huge
// pages (madvise MADV_HUGEPAGE), where transparent huge pages are enabled
// as "madvise", as on many distributions. A step reads most buffers once,
// cold, a page at a time: with 4 KiB pages the TLB misses of those passes
// cost more than their loads (fc6's weights are read down their columns).
// It only advises: an error, or a kernel without THP, changes nothing.
func adviseHugePages(v []float32) {
	n := uintptr(len(v)) * 4
	if n < 2*hugePageBytes {
		return
	}
	p := unsafe.Pointer(unsafe.SliceData(v))
	start := uintptr(p)
	lo := (start + hugePageBytes - 1) &^ (hugePageBytes - 1)
	hi := (start + n) &^ (hugePageBytes - 1)
	if hi <= lo {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Add(p, lo-start)), hi-lo)
	_ = syscall.Madvise(b, syscall.MADV_HUGEPAGE)
}
