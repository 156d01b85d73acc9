package cpu

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// TestAllocAdvisesHugePages checks that a large buffer's whole 2 MiB pages
// are advised MADV_HUGEPAGE (the "hg" flag of its mapping in smaps), and a
// small one's are not.
func TestAllocAdvisesHugePages(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil {
		t.Skip("this kernel has no transparent huge pages")
	}
	d := New(Options{Threads: 1})
	big, err := d.Alloc(8 << 20) // 32 MiB
	if err != nil {
		t.Fatal(err)
	}
	at := uintptr(unsafe.Pointer(&d.data("big", big, 1)[0]))
	mid := (at + 16<<20) &^ (hugePageBytes - 1)
	if !hasVmFlag(t, mid, "hg") {
		t.Errorf("a 32 MiB buffer's middle page %#x is not advised MADV_HUGEPAGE", mid)
	}
	small, err := d.Alloc(1 << 10)
	if err != nil {
		t.Fatal(err)
	}
	if s := uintptr(unsafe.Pointer(&d.data("small", small, 1)[0])); hasVmFlag(t, s, "hg") {
		t.Errorf("a 4 KiB buffer at %#x lies in a mapping advised MADV_HUGEPAGE", s)
	}
}

// hasVmFlag reports whether the mapping of address a in /proc/self/smaps
// has the VmFlags flag.
func hasVmFlag(t *testing.T, a uintptr, flag string) bool {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skipf("cannot read smaps: %v", err)
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if lo, hi, ok := strings.Cut(strings.Fields(line)[0], "-"); ok && !strings.HasSuffix(line, ":") && !strings.Contains(lo, ":") {
			l, err1 := strconv.ParseUint(lo, 16, 64)
			h, err2 := strconv.ParseUint(hi, 16, 64)
			in = err1 == nil && err2 == nil && uint64(a) >= l && uint64(a) < h
			continue
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			return strings.Contains(" "+strings.TrimPrefix(line, "VmFlags:")+" ", " "+flag+" ")
		}
	}
	t.Fatalf("no mapping holds %#x in /proc/self/smaps", a)
	return false
}
