package data

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/big"
	"os"
	"strings"

	"gonum.org/v1/gonum/mat"
)

// meanAndPCA adds up the statistics of the training shards, m.Train.Images
// images of m.Channels×m.Size×m.Size, into the mean image, float32
// little-endian (C, Size, Size) in raw 0..255 units (the bytes of
// mean.f32), and sets m's covariance, eigenvalues and eigenvectors (see
// Prepare).
func meanAndPCA(train []*shardStats, m *prepMeta) ([]byte, error) {
	pix := make([]uint64, m.Channels*m.Size*m.Size)
	var mom [9]uint64
	for _, st := range train {
		for i, v := range st.sum {
			pix[i] += uint64(v)
		}
		for i, v := range st.mom {
			mom[i] += v
		}
	}
	mean := make([]byte, 4*len(pix))
	for i, v := range pix {
		binary.LittleEndian.PutUint32(mean[4*i:], math.Float32bits(float32(float64(v)/float64(m.Train.Images))))
	}
	m.Covariance = rgbCovariance(mom, uint64(m.Train.Images)*uint64(m.Size*m.Size))
	var err error
	if m.Eigenvalues, m.Eigenvectors, err = eigenRGB(m.Covariance); err != nil {
		return nil, err
	}
	return mean, nil
}

// rgbMoments returns, over the n pixels of an image (3, n), the sums
//
//	Σr, Σg, Σb, Σr², Σrg, Σrb, Σg², Σgb, Σb²
//
// exact in uint64.
func rgbMoments(pix []uint8, n int) [9]uint64 {
	r, g, b := pix[:n], pix[n:2*n], pix[2*n:3*n]
	var m [9]uint64
	// Per row of 256 pixels the sums fit in uint32 (256·255² < 2^32).
	for lo := 0; lo < n; lo += 256 {
		hi := min(lo+256, n)
		var s [9]uint32
		for i := lo; i < hi; i++ {
			ri, gi, bi := uint32(r[i]), uint32(g[i]), uint32(b[i])
			s[0] += ri
			s[1] += gi
			s[2] += bi
			s[3] += ri * ri
			s[4] += ri * gi
			s[5] += ri * bi
			s[6] += gi * gi
			s[7] += gi * bi
			s[8] += bi * bi
		}
		for k := range m {
			m[k] += uint64(s[k])
		}
	}
	return m
}

// rgbCovariance returns the population covariance of n pixels from their
// moments (see rgbMoments): cov(a, b) = (n·Σab − Σa·Σb) / n², with the
// numerator exact.
func rgbCovariance(mom [9]uint64, n uint64) [3][3]float64 {
	idx := [3][3]int{{3, 4, 5}, {4, 6, 7}, {5, 7, 8}}
	bn := new(big.Int).SetUint64(n)
	n2 := new(big.Int).Mul(bn, bn)
	var cov [3][3]float64
	for a := range 3 {
		for b := range 3 {
			num := new(big.Int).Mul(bn, new(big.Int).SetUint64(mom[idx[a][b]]))
			num.Sub(num, new(big.Int).Mul(new(big.Int).SetUint64(mom[a]), new(big.Int).SetUint64(mom[b])))
			cov[a][b], _ = new(big.Rat).SetFrac(num, n2).Float64()
		}
	}
	return cov
}

// eigenRGB returns the eigenvalues of a symmetric 3×3 matrix in decreasing
// order and its unit eigenvectors, vec[i] of val[i], each with its
// largest-magnitude component positive (the first of equal ones).
func eigenRGB(cov [3][3]float64) (val [3]float64, vec [3][3]float64, err error) {
	s := mat.NewSymDense(3, []float64{
		cov[0][0], cov[0][1], cov[0][2],
		cov[1][0], cov[1][1], cov[1][2],
		cov[2][0], cov[2][1], cov[2][2],
	})
	var es mat.EigenSym
	if !es.Factorize(s, true) {
		return val, vec, fmt.Errorf("data: prepare: eigen-decomposition of the RGB covariance %v failed", cov)
	}
	vals := es.Values(nil) // ascending
	var ev mat.Dense
	es.VectorsTo(&ev) // columns
	for i := range 3 {
		c := 2 - i
		val[i] = vals[c]
		big := 0
		for k := range 3 {
			vec[i][k] = ev.At(k, c)
			if math.Abs(vec[i][k]) > math.Abs(vec[i][big]) {
				big = k
			}
		}
		if vec[i][big] < 0 {
			for k := range 3 {
				vec[i][k] = -vec[i][k]
			}
		}
	}
	return val, vec, nil
}

// shardStats are what a shard contributes to the data set's statistics,
// saved beside it as SPLIT-NNNNN.stats so that a rerun need not decode its
// images again. Little-endian:
//
//	"ALXSTATS", version u32, size u32, channels u32, sources u32, count u32,
//	fingerprint [32]byte, sum u32 × C·S·S, moments u64 × 9,
//	skipped u32, then per skipped file: len u32, path, len u32, reason;
//	CRC-32C u32 of everything before it.
type shardStats struct {
	fp                             [32]byte
	size, channels, sources, count int
	sum                            []uint32 // (C, S, S): per-pixel sums over the images
	mom                            [9]uint64
	skipped                        []SkippedFile
}

const statsMagic = "ALXSTATS"

func statsName(shard string) string { return strings.TrimSuffix(shard, ".shard") + ".stats" }

func writeShardStats(path string, st *shardStats) error {
	le := binary.LittleEndian
	b := []byte(statsMagic)
	for _, v := range []int{shardVersion, st.size, st.channels, st.sources, st.count} {
		b = le.AppendUint32(b, uint32(v))
	}
	b = append(b, st.fp[:]...)
	for _, v := range st.sum {
		b = le.AppendUint32(b, v)
	}
	for _, v := range st.mom {
		b = le.AppendUint64(b, v)
	}
	b = le.AppendUint32(b, uint32(len(st.skipped)))
	for _, s := range st.skipped {
		for _, str := range []string{s.Path, s.Reason} {
			b = le.AppendUint32(b, uint32(len(str)))
			b = append(b, str...)
		}
	}
	b = le.AppendUint32(b, crc32.Checksum(b, crcTable))
	return writeFileAtomic(path, b)
}

func readShardStats(path string) (*shardStats, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	bad := errors.New("data: " + path + ": not a valid statistics file")
	le := binary.LittleEndian
	if len(b) < 8+20+32+72+8 || string(b[:8]) != statsMagic || le.Uint32(b[len(b)-4:]) != crc32.Checksum(b[:len(b)-4], crcTable) {
		return nil, bad
	}
	b = b[8 : len(b)-4]
	u32 := func() int {
		if len(b) < 4 {
			return -1
		}
		v := le.Uint32(b)
		b = b[4:]
		return int(v)
	}
	if u32() != shardVersion {
		return nil, bad
	}
	st := &shardStats{size: u32(), channels: u32(), sources: u32(), count: u32()}
	if st.size < 1 || st.size > shardMaxSide || st.channels < 1 || st.channels > shardMaxChannels || len(b) < 32 {
		return nil, bad
	}
	copy(st.fp[:], b)
	b = b[32:]
	n := st.channels * st.size * st.size
	if len(b) < 4*n+72 {
		return nil, bad
	}
	st.sum = make([]uint32, n)
	for i := range st.sum {
		st.sum[i] = le.Uint32(b[4*i:])
	}
	b = b[4*n:]
	for i := range st.mom {
		st.mom[i] = le.Uint64(b[8*i:])
	}
	b = b[72:]
	k := u32()
	if k < 0 || k > len(b)/8 {
		return nil, bad
	}
	for range k {
		var s [2]string
		for i := range s {
			l := u32()
			if l < 0 || l > len(b) {
				return nil, bad
			}
			s[i], b = string(b[:l]), b[l:]
		}
		st.skipped = append(st.skipped, SkippedFile{Path: s[0], Reason: s[1]})
	}
	if len(b) != 0 {
		return nil, bad
	}
	return st, nil
}
