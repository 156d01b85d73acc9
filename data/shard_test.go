package data

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// shardFixture writes split's shards to dir, shard k holding counts[k]
// random c×size×size records, and returns the records and labels in order.
func shardFixture(t *testing.T, dir, split string, counts []int, c, size, capacity int) (recs [][]uint8, labels []int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(len(counts)), 7))
	for k, n := range counts {
		w, err := createShard(dir, split, k, len(counts), c, size, capacity)
		if err != nil {
			t.Fatal(err)
		}
		for range n {
			rec := make([]uint8, c*size*size)
			for i := range rec {
				rec[i] = uint8(rng.IntN(256))
			}
			l := rng.IntN(1000)
			if err := w.add(rec, l); err != nil {
				t.Fatal(err)
			}
			recs, labels = append(recs, rec), append(labels, l)
		}
		if err := w.finish(); err != nil {
			t.Fatal(err)
		}
	}
	return recs, labels
}

func TestShardRoundTrip(t *testing.T) {
	dir := t.TempDir()
	counts := []int{4, 0, 3, 1} // a shard may be empty: all its files skipped
	recs, labels := shardFixture(t, dir, "train", counts, 3, 5, 4)
	shardFixture(t, dir, "val", []int{2}, 3, 5, 4) // another split beside it
	s, err := OpenShards(dir, "train")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.N() != len(recs) || s.C() != 3 || s.Size() != 5 {
		t.Fatalf("N, C, Size = %d, %d, %d, want %d, 3, 5", s.N(), s.C(), s.Size(), len(recs))
	}
	for i := range recs {
		if s.Label(i) != labels[i] || s.Labels()[i] != labels[i] {
			t.Errorf("label %d = %d, want %d", i, s.Label(i), labels[i])
		}
	}
	// Concurrent reads, in a scrambled order.
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			dst := make([]uint8, 3*5*5+3) // longer is fine
			for k := range s.N() {
				i := (k*5 + g) % s.N()
				if err := s.Read(i, dst); err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(dst[:75], recs[i]) {
					t.Errorf("image %d differs", i)
				}
			}
		})
	}
	wg.Wait()
	// Records are page-aligned.
	fi, _ := os.Stat(filepath.Join(dir, "train-00000.shard"))
	if fi.Size() != shardDataOffset(4)+4*75 || shardDataOffset(4)%4096 != 0 || shardDataOffset(ShardImages)%4096 != 0 {
		t.Errorf("shard 0 is %d bytes, data offset %d", fi.Size(), shardDataOffset(4))
	}
	if v, err := OpenShards(dir, "val"); err != nil || v.N() != 2 {
		t.Errorf("val: %v", err)
	} else {
		v.Close()
	}
}

func TestShardCorruptRecord(t *testing.T) {
	dir := t.TempDir()
	recs, _ := shardFixture(t, dir, "train", []int{2, 3}, 3, 4, 4)
	p := filepath.Join(dir, "train-00001.shard")
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Flip one bit of shard 1's record 2 (image 4).
	off := shardDataOffset(4) + 2*48 + 17
	var b [1]byte
	f.ReadAt(b[:], off)
	b[0] ^= 0x10
	f.WriteAt(b[:], off)
	f.Close()
	s, err := OpenShards(dir, "train")
	if err != nil {
		t.Fatal(err) // records are checked when read, not on open
	}
	defer s.Close()
	dst := make([]uint8, 48)
	for i := range 4 {
		if err := s.Read(i, dst); err != nil || !bytes.Equal(dst, recs[i]) {
			t.Errorf("image %d: %v", i, err)
		}
	}
	err = s.Read(4, dst)
	var fe *FileError
	if !errors.As(err, &fe) || fe.Path != p || !strings.Contains(err.Error(), "record 2 (train image 4) is corrupt: CRC") || !errors.Is(err, ErrFormat) {
		t.Errorf("corrupt record: %v", err)
	}
}

func TestShardDamagedFiles(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(t *testing.T, dir string)
		file string // the error names it
		want string
	}{
		{"truncated", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "train-00001.shard")
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()-1)
		}, "train-00001.shard", "truncated: header says 3 records of 48 bytes"},
		{"too long", func(t *testing.T, dir string) {
			f, _ := os.OpenFile(filepath.Join(dir, "train-00000.shard"), os.O_APPEND|os.O_WRONLY, 0)
			f.Write([]byte{0})
			f.Close()
		}, "train-00000.shard", "too long"},
		{"header only", func(t *testing.T, dir string) { os.Truncate(filepath.Join(dir, "train-00002.shard"), 10) }, "train-00002.shard", "truncated: 10 bytes"},
		{"empty", func(t *testing.T, dir string) { os.Truncate(filepath.Join(dir, "train-00002.shard"), 0) }, "train-00002.shard", "empty file"},
		{"missing", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "train-00001.shard")) }, "train-00001.shard", "missing, but 2 train shards exist"},
		{"last missing", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "train-00002.shard")) }, "train-00000.shard", "header says shard 0 of 3, but it is file 0 of 2"},
		{"header bit", func(t *testing.T, dir string) { flipByte(t, filepath.Join(dir, "train-00000.shard"), 13) }, "train-00000.shard", "header CRC"},
		{"label bit", func(t *testing.T, dir string) { flipByte(t, filepath.Join(dir, "train-00000.shard"), 64) }, "train-00000.shard", "tables: CRC"},
		{"not a shard", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "train-00001.shard"), bytes.Repeat([]byte("x"), 100))
		}, "train-00001.shard", "not a shard file"},
		{"none", func(t *testing.T, dir string) {
			for k := range 3 {
				os.Remove(filepath.Join(dir, shardName("train", k)))
			}
		}, "train-00000.shard", "no train shards"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			shardFixture(t, dir, "train", []int{2, 3, 1}, 3, 4, 4)
			c.edit(t, dir)
			s, err := OpenShards(dir, "train")
			if err == nil {
				s.Close()
			}
			var fe *FileError
			if !errors.As(err, &fe) || fe.Path != filepath.Join(dir, c.file) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %v, want one line naming %s containing %q", err, c.file, c.want)
			}
		})
	}
}

func flipByte(t *testing.T, p string, off int64) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 1
	writeFile(t, p, b)
}

// shardBytes returns a whole shard file of the given records, c×size×size
// bytes each, with its records right after the tables (the reader does not
// need the writer's alignment): small seeds for the fuzzer.
func shardBytes(c, size int, labels []int32, recs [][]uint8) []byte {
	n := len(labels)
	h := shardHeader{count: n, size: size, channels: c, total: 1, dataOff: int64(shardHeaderSize + 8*n)}
	tb := make([]byte, 8*n)
	for j := range n {
		binary.LittleEndian.PutUint32(tb[4*j:], uint32(labels[j]))
		binary.LittleEndian.PutUint32(tb[4*n+4*j:], crc32.Checksum(recs[j], crcTable))
	}
	h.tableCRC = crc32.Checksum(tb, crcTable)
	b := append(h.encode(), tb...)
	for _, r := range recs {
		b = append(b, r...)
	}
	return b
}

func FuzzReadShard(f *testing.F) {
	// A small valid shard, its prefixes, and headers that lie.
	valid := shardBytes(1, 2, []int32{3, 0}, [][]uint8{{1, 2, 3, 4}, {5, 6, 7, 8}})
	if _, _, _, err := readShardIndex(bytes.NewReader(valid), int64(len(valid)), "seed"); err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	for _, k := range []int{0, 8, 63, 64, 72, 80, len(valid) - 1} {
		f.Add(valid[:k])
	}
	hostile := shardHeader{count: 1 << 30, size: 1 << 14, channels: 4, total: 1, dataOff: 1 << 40}.encode()
	f.Add(hostile)
	huge := shardHeader{count: 0xffffffff, size: 1, channels: 1, total: 1, dataOff: shardHeaderSize + 8*0xffffffff}.encode()
	f.Add(append(huge, make([]byte, 64)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkShardIndex(t, b)
		// The same bytes with their CRCs made right, so that the fuzzer
		// reaches the checks behind them.
		if len(b) >= shardHeaderSize {
			b = slices.Clone(b)
			if n := uint64(binary.LittleEndian.Uint32(b[12:])); shardHeaderSize+8*n <= uint64(len(b)) {
				binary.LittleEndian.PutUint32(b[40:], crc32.Checksum(b[shardHeaderSize:shardHeaderSize+8*n], crcTable))
			}
			binary.LittleEndian.PutUint32(b[60:], crc32.Checksum(b[:60], crcTable))
			checkShardIndex(t, b)
		}
	})
}

// checkShardIndex parses b as a shard file and checks what it returns.
func checkShardIndex(t *testing.T, b []byte) {
	h, labels, crcs, err := readShardIndex(bytes.NewReader(b), int64(len(b)), "fuzz")
	if err != nil {
		if !errors.Is(err, ErrFormat) || strings.Contains(err.Error(), "\n") {
			t.Errorf("error %q does not wrap ErrFormat or is not one line", err)
		}
		return
	}
	if len(labels) != h.count || len(crcs) != h.count || h.dataOff+int64(h.count*h.recordBytes()) != int64(len(b)) || h.dataOff < int64(shardHeaderSize+8*h.count) {
		t.Errorf("header %+v with %d labels from %d bytes", h, len(labels), len(b))
	}
	for _, l := range labels {
		if l < 0 {
			t.Errorf("label %d", l)
		}
	}
	if re := h.encode(); !bytes.Equal(re, b[:shardHeaderSize]) {
		t.Errorf("header %+v does not encode to its bytes", h)
	}
}
