package data

import (
	"context"
	"iter"
)

// Batcher is what training and scoring need of a loader: Loader for
// in-memory sets, CropLoader for prepared ones.
type Batcher interface {
	// Batches is the number of batches in an epoch.
	Batches() int
	// EpochFrom yields epoch's batches from the start-th on.
	EpochFrom(ctx context.Context, epoch, start int) iter.Seq2[*Batch, error]
	// Recycle hands a batch back for reuse once it has been consumed.
	Recycle(b *Batch)
	// Stats reports the loader's throughput.
	Stats() Stats
}

var (
	_ Batcher = (*Loader)(nil)
	_ Batcher = (*CropLoader)(nil)
)
