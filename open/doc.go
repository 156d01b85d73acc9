// Package open turns what a user names into live objects: a --gpus value
// into devices (the only importer of the backends, gpu/cpu and gpu/cuda), a
// net's name or a weights file into a net, a --data directory (IDX,
// CIFAR-10's binary batches, or a folder trainer prepare wrote) into its
// loaders with the preprocessing training applies. Every command (train,
// eval, predict, forward, bench) opens through it, so each rule is written
// once: which device a one-tower net takes, how each kind of data set is
// found and preprocessed, what the option strings mean.
//
// Whatever it opens has a Close, and every caller defers it.
package open
