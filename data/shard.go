package data

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
)

// ShardImages is the most images one shard file holds.
const ShardImages = 1024

// The shard file format, version 1. All integers are little-endian.
//
//	offset  size      field
//	0       8         magic "ALXSHARD"
//	8       4         version, 1
//	12      4         count: records in this file
//	16      4         size S: records are S×S images
//	20      4         channels C
//	24      4         index of this shard in its split (the NNNNN of split-NNNNN.shard)
//	28      4         shards in the split
//	32      8         data offset D: where record 0 starts
//	40      4         CRC-32C of the two tables
//	44      16        zero
//	60      4         CRC-32C of bytes 0..59
//	64      4·count   label table: int32 per record
//	…       4·count   CRC table: CRC-32C (Castagnoli) of each record
//	…                 zero up to D
//	D       count·R   records, R = C·S·S bytes each, uint8 (C, S, S), W fastest
//
// so record j of a shard lies at D + j·R and the file is exactly D + count·R
// bytes. The writer reserves the tables' room for ShardImages records and
// rounds D up to 4096, so records are page-aligned whatever count turns out
// to be (images that fail to decode are left out, so a shard may hold fewer
// than ShardImages). A split's shards are numbered from 0 with no gaps; image
// i of the split is record i − first(k) of the shard k that holds it.
const (
	shardMagic      = "ALXSHARD"
	shardVersion    = 1
	shardHeaderSize = 64
	shardAlign      = 4096
	// shardMaxSide bounds S, and shardMaxChannels C, so that a hostile
	// header cannot describe records of absurd size.
	shardMaxSide     = 1 << 14
	shardMaxChannels = 4
)

// crcTable is CRC-32C, which has hardware support on amd64 and arm64.
var crcTable = crc32.MakeTable(crc32.Castagnoli)

const hintShard = "the file is damaged: delete it and its .stats file and rerun trainer prepare with the same --src and --out to rewrite it"

// shardHeader is a shard file's parsed header.
type shardHeader struct {
	count, size, channels int
	index, total          int
	dataOff               int64
	tableCRC              uint32
}

// recordBytes returns R = C·S·S.
func (h shardHeader) recordBytes() int { return h.channels * h.size * h.size }

// shardDataOffset returns D for a shard written with room for capacity
// records.
func shardDataOffset(capacity int) int64 {
	end := int64(shardHeaderSize + 8*capacity)
	return (end + shardAlign - 1) / shardAlign * shardAlign
}

// shardName returns the file name of shard k of split.
func shardName(split string, k int) string { return fmt.Sprintf("%s-%05d.shard", split, k) }

func (h shardHeader) encode() []byte {
	b := make([]byte, shardHeaderSize)
	copy(b, shardMagic)
	le := binary.LittleEndian
	le.PutUint32(b[8:], shardVersion)
	le.PutUint32(b[12:], uint32(h.count))
	le.PutUint32(b[16:], uint32(h.size))
	le.PutUint32(b[20:], uint32(h.channels))
	le.PutUint32(b[24:], uint32(h.index))
	le.PutUint32(b[28:], uint32(h.total))
	le.PutUint64(b[32:], uint64(h.dataOff))
	le.PutUint32(b[40:], h.tableCRC)
	le.PutUint32(b[60:], crc32.Checksum(b[:60], crcTable))
	return b
}

// parseShardHeader parses and checks a header against the file's size.
func parseShardHeader(b []byte, fileSize int64, name string) (shardHeader, error) {
	var h shardHeader
	bad := func(format string, args ...any) error { return formatErr(name, hintShard, nil, format, args...) }
	if len(b) < shardHeaderSize {
		if len(b) == 0 {
			return h, bad("empty file, want a shard")
		}
		return h, bad("truncated: %d bytes, a shard's header alone is %d", len(b), shardHeaderSize)
	}
	if string(b[:8]) != shardMagic {
		return h, bad("magic %q, want %q: not a shard file", b[:8], shardMagic)
	}
	le := binary.LittleEndian
	if got, want := le.Uint32(b[60:]), crc32.Checksum(b[:60], crcTable); got != want {
		return h, bad("header CRC 0x%08x, computed 0x%08x", got, want)
	}
	if v := le.Uint32(b[8:]); v != shardVersion {
		return h, bad("version %d, this program reads version %d: prepare the data again", v, shardVersion)
	}
	count, size, channels := le.Uint32(b[12:]), le.Uint32(b[16:]), le.Uint32(b[20:])
	index, total, off := le.Uint32(b[24:]), le.Uint32(b[28:]), le.Uint64(b[32:])
	switch {
	case size < 1 || size > shardMaxSide || channels < 1 || channels > shardMaxChannels:
		return h, bad("header says %d channels of %d×%d: want 1 to %d channels of at most %d×%d", channels, size, size, shardMaxChannels, shardMaxSide, shardMaxSide)
	case total < 1 || index >= total:
		return h, bad("header says shard %d of %d", index, total)
	case off > 1<<61 || off < shardHeaderSize+8*uint64(count):
		return h, bad("header says records start at byte %d, but the header and tables of %d records take %d", off, count, shardHeaderSize+8*uint64(count))
	}
	for _, v := range b[44:60] {
		if v != 0 {
			return h, bad("reserved header bytes are not zero")
		}
	}
	h = shardHeader{count: int(count), size: int(size), channels: int(channels), index: int(index), total: int(total), dataOff: int64(off), tableCRC: le.Uint32(b[40:])}
	// D ≤ 2^61, count < 2^32 and R ≤ 4·2^28: the sum fits in int64.
	if want := h.dataOff + int64(h.count)*int64(h.recordBytes()); fileSize != want {
		what := "truncated"
		if fileSize > want {
			what = "too long"
		}
		return h, bad("%s: header says %d records of %d bytes from byte %d (%d bytes), the file has %d bytes", what, h.count, h.recordBytes(), h.dataOff, want, fileSize)
	}
	return h, nil
}

// parseShardTables parses the label and CRC tables, b = 8·count bytes.
func parseShardTables(b []byte, h shardHeader, name string) (labels []int32, crcs []uint32, err error) {
	if len(b) != 8*h.count {
		return nil, nil, formatErr(name, hintShard, nil, "tables are %d bytes, want %d", len(b), 8*h.count)
	}
	if got := crc32.Checksum(b, crcTable); got != h.tableCRC {
		return nil, nil, formatErr(name, hintShard, nil, "label and CRC tables: CRC 0x%08x, header says 0x%08x", got, h.tableCRC)
	}
	labels = make([]int32, h.count)
	crcs = make([]uint32, h.count)
	for j := range h.count {
		labels[j] = int32(binary.LittleEndian.Uint32(b[4*j:]))
		crcs[j] = binary.LittleEndian.Uint32(b[4*h.count+4*j:])
		if labels[j] < 0 {
			return nil, nil, formatErr(name, hintShard, nil, "record %d has label %d", j, labels[j])
		}
	}
	return labels, crcs, nil
}

// readShardIndex reads and checks a shard's header and tables from r, a
// file of size bytes. It allocates only after the header has been checked
// against size, so at most size bytes.
func readShardIndex(r io.ReaderAt, size int64, name string) (shardHeader, []int32, []uint32, error) {
	hb := make([]byte, min(size, shardHeaderSize))
	if _, err := r.ReadAt(hb, 0); err != nil && !(errors.Is(err, io.EOF) && len(hb) < shardHeaderSize) {
		return shardHeader{}, nil, nil, readErr(name, 0, err)
	}
	h, err := parseShardHeader(hb, size, name)
	if err != nil {
		return h, nil, nil, err
	}
	tb := make([]byte, 8*h.count)
	if _, err := r.ReadAt(tb, shardHeaderSize); err != nil {
		return h, nil, nil, readErr(name, shardHeaderSize, err)
	}
	labels, crcs, err := parseShardTables(tb, h, name)
	return h, labels, crcs, err
}

// shardWriter writes one shard file under a temporary name and renames it
// when it is complete.
type shardWriter struct {
	f          *os.File
	tmp, final string
	h          shardHeader
	labels     []int32
	crcs       []uint32
}

// createShard starts shard index of total in dir for records of c×size×size
// bytes, with room in the tables for capacity records.
func createShard(dir, split string, index, total, c, size, capacity int) (*shardWriter, error) {
	final := filepath.Join(dir, shardName(split, index))
	tmp := final + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return nil, &FileError{Path: tmp, Problem: openProblem(err), Kind: ErrFormat, Err: err}
	}
	w := &shardWriter{f: f, tmp: tmp, final: final,
		h: shardHeader{size: size, channels: c, index: index, total: total, dataOff: shardDataOffset(capacity)}}
	return w, nil
}

// add appends a record, R bytes (C, S, S).
func (w *shardWriter) add(rec []uint8, label int) error {
	if len(rec) != w.h.recordBytes() {
		panic(fmt.Sprintf("data: shard record of %d bytes, want %d", len(rec), w.h.recordBytes()))
	}
	if 8*(w.h.count+1) > int(w.h.dataOff)-shardHeaderSize {
		panic(fmt.Sprintf("data: shard %s: more records than its capacity", w.final))
	}
	off := w.h.dataOff + int64(w.h.count)*int64(len(rec))
	if _, err := w.f.WriteAt(rec, off); err != nil {
		return &FileError{Path: w.tmp, Problem: "write: " + openProblem(err), Kind: ErrFormat, Err: err}
	}
	w.labels = append(w.labels, int32(label))
	w.crcs = append(w.crcs, crc32.Checksum(rec, crcTable))
	w.h.count++
	return nil
}

// finish writes the tables and header, syncs and renames the file to its
// final name.
func (w *shardWriter) finish() error {
	tb := make([]byte, 8*w.h.count)
	for j := range w.h.count {
		binary.LittleEndian.PutUint32(tb[4*j:], uint32(w.labels[j]))
		binary.LittleEndian.PutUint32(tb[4*w.h.count+4*j:], w.crcs[j])
	}
	w.h.tableCRC = crc32.Checksum(tb, crcTable)
	// Records end at dataOff + count·R; with no records the file is just
	// the header and the reserved room.
	end := w.h.dataOff + int64(w.h.count)*int64(w.h.recordBytes())
	err := w.f.Truncate(end)
	if err == nil {
		_, err = w.f.WriteAt(append(w.h.encode(), tb...), 0)
	}
	if err == nil {
		err = w.f.Sync()
	}
	if e := w.f.Close(); err == nil {
		err = e
	}
	if err == nil {
		err = os.Rename(w.tmp, w.final)
	}
	if err != nil {
		os.Remove(w.tmp)
		return &FileError{Path: w.tmp, Problem: "write: " + openProblem(err), Kind: ErrFormat, Err: err}
	}
	return nil
}

// abort removes the unfinished file.
func (w *shardWriter) abort() {
	w.f.Close()
	os.Remove(w.tmp)
}

// Shards reads one split of a prepared data set: the files
// SPLIT-00000.shard, SPLIT-00001.shard, … of a directory, as one sequence of
// N images of C×Size×Size bytes. Its methods are safe for concurrent use.
type Shards struct {
	dir, split string
	c, size    int
	files      []*os.File
	names      []string
	first      []int   // first[k]: index of shard k's record 0; first[len(files)] = N
	off        []int64 // data offset of each shard
	labels     []int32 // (N)
	crcs       []uint32
}

var shardFileRE = regexp.MustCompile(`^(.+)-([0-9]{5,})\.shard$`)

// OpenShards opens the shards of split ("train", "val") in dir and checks
// everything but the records themselves: the files are numbered from 0 with
// none missing, each header is whole and agrees with the file's size, its
// index and the number of shards, all have the same image size and
// channels, and the tables match their CRC. Records are checked against
// their CRC as they are read. Close releases the files.
func OpenShards(dir, split string) (*Shards, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		kind := ErrFormat
		if errors.Is(err, os.ErrNotExist) {
			kind = ErrNotFound
		}
		return nil, &FileError{Path: dir, Problem: openProblem(err), Hint: "pass a folder written by trainer prepare", Kind: kind, Err: err}
	}
	var idx []int
	for _, de := range des {
		m := shardFileRE.FindStringSubmatch(de.Name())
		if m == nil || m[1] != split {
			continue
		}
		k, err := strconv.Atoi(m[2])
		if err != nil || shardName(split, k) != de.Name() {
			return nil, formatErr(filepath.Join(dir, de.Name()), "rename or remove it", nil, "not a shard file name: want %s", shardName(split, 0))
		}
		idx = append(idx, k)
	}
	if len(idx) == 0 {
		return nil, &FileError{Path: filepath.Join(dir, shardName(split, 0)), Problem: "no " + split + " shards", Hint: "run trainer prepare", Kind: ErrNotFound, Err: os.ErrNotExist}
	}
	slices.Sort(idx)
	for k, v := range idx {
		if v != k {
			return nil, &FileError{Path: filepath.Join(dir, shardName(split, k)), Problem: fmt.Sprintf("missing, but %d %s shards exist up to %s", len(idx), split, shardName(split, idx[len(idx)-1])),
				Hint: "rerun trainer prepare with the same --src and --out to write it", Kind: ErrFormat}
		}
	}
	s := &Shards{dir: dir, split: split, first: []int{0}}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	for k := range idx {
		p := filepath.Join(dir, shardName(split, k))
		f, err := os.Open(p)
		if err != nil {
			return nil, &FileError{Path: p, Problem: openProblem(err), Kind: ErrFormat, Err: err}
		}
		s.files, s.names = append(s.files, f), append(s.names, p)
		st, err := f.Stat()
		if err != nil {
			return nil, &FileError{Path: p, Problem: openProblem(err), Kind: ErrFormat, Err: err}
		}
		h, labels, crcs, err := readShardIndex(f, st.Size(), p)
		if err != nil {
			return nil, err
		}
		switch {
		case h.index != k || h.total != len(idx):
			hint := "it belongs to another preparation: rerun trainer prepare with the same --src and --out"
			if h.total > len(idx) {
				hint = "shards are missing: rerun trainer prepare with the same --src and --out to write them"
			}
			return nil, formatErr(p, hint, nil, "header says shard %d of %d, but it is file %d of %d", h.index, h.total, k, len(idx))
		case k > 0 && (h.size != s.size || h.channels != s.c):
			return nil, formatErr(p, "it belongs to another preparation: rerun trainer prepare", nil,
				"images of %d×%d×%d, but %s has %d×%d×%d", h.channels, h.size, h.size, filepath.Base(s.names[0]), s.c, s.size, s.size)
		}
		s.c, s.size = h.channels, h.size
		s.first = append(s.first, s.first[k]+h.count)
		s.off = append(s.off, h.dataOff)
		s.labels = append(s.labels, labels...)
		s.crcs = append(s.crcs, crcs...)
	}
	ok = true
	return s, nil
}

// N returns the number of images.
func (s *Shards) N() int { return len(s.labels) }

// C returns the number of channels.
func (s *Shards) C() int { return s.c }

// Size returns the images' side: each is (C, Size, Size).
func (s *Shards) Size() int { return s.size }

// Label returns image i's class index.
func (s *Shards) Label(i int) int { return int(s.labels[i]) }

// Labels returns every image's class index, (N), in a new slice.
func (s *Shards) Labels() []int {
	out := make([]int, len(s.labels))
	for i, l := range s.labels {
		out[i] = int(l)
	}
	return out
}

// Read reads image i, C·Size·Size bytes (C, Size, Size), into dst and checks
// it against its CRC. A mismatch or a read error is a *FileError naming the
// shard file and the record. Read panics if i is out of range or dst is
// shorter than an image.
func (s *Shards) Read(i int, dst []uint8) error {
	if i < 0 || i >= len(s.labels) {
		panic(fmt.Sprintf("data: Shards.Read(%d) of %d images", i, len(s.labels)))
	}
	r := s.c * s.size * s.size
	if len(dst) < r {
		panic(fmt.Sprintf("data: Shards.Read into %d bytes, an image is %d", len(dst), r))
	}
	dst = dst[:r]
	k := sort.Search(len(s.files), func(k int) bool { return s.first[k+1] > i })
	j := i - s.first[k]
	if _, err := s.files[k].ReadAt(dst, s.off[k]+int64(j)*int64(r)); err != nil {
		return &FileError{Path: s.names[k], Problem: fmt.Sprintf("record %d (%s image %d): read error: %v", j, s.split, i, err), Hint: hintShard, Kind: ErrFormat, Err: err}
	}
	if got := crc32.Checksum(dst, crcTable); got != s.crcs[i] {
		return &FileError{Path: s.names[k], Problem: fmt.Sprintf("record %d (%s image %d) is corrupt: CRC 0x%08x, the table says 0x%08x", j, s.split, i, got, s.crcs[i]), Hint: hintShard, Kind: ErrFormat}
	}
	return nil
}

// Close closes the files.
func (s *Shards) Close() error {
	var errs []error
	for _, f := range s.files {
		errs = append(errs, f.Close())
	}
	s.files = nil
	return errors.Join(errs...)
}
