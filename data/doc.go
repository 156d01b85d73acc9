// Package data reads image classification data sets, preprocesses and
// augments them as the paper does (§2, §4.1), and feeds them to the trainer
// through a prefetching loader.
//
// Shapes: N images, C channels, H rows, W columns, W fastest. A Set holds its
// images as uint8 (N, C, H, W); the loader produces float32 batches
// (N, C, Size, Size) on a Size×Size canvas (Size = 32 for 28×28 data).
//
// The pipeline, and where it departs from the paper:
//
//   - Data: IDX files (MNIST, Fashion-MNIST) read by LoadIDX, CIFAR-10's
//     binary batches read by LoadCIFAR, and ImageNet-style folders, which
//     Prepare turns once into 256×256 shards (OpenPrepared). There is no
//     separate hold-out: the test (or val) set serves as the validation set,
//     as the paper's ILSVRC-2012 numbers are validation-set numbers.
//   - Canvas instead of rescaling: the paper rescales ImageNet images to
//     256×256; small images are instead placed centred on the canvas, and
//     images larger than the canvas are cropped.
//   - Training augmentation (§4.1): a random Size×Size window of the image
//     zero-padded by Pad on every side (random translations of up to ±Pad
//     pixels, the small-image analogue of the paper's random 227×227 crops of
//     256×256) and a horizontal reflection with probability 1/2. Evaluation
//     takes the centre window, unreflected (the paper's single-patch numbers;
//     the ten-patch average is left to the caller).
//   - Normalisation (§2): the paper subtracts the training set's mean image
//     and nothing else, and so do we: an input is the raw pixel value (0..255)
//     minus the mean image in the same raw units, with no scaling to [0, 1]
//     and no division by a standard deviation. This matters: the weight
//     initialisation of §5, N(0, 0.01²), was designed for inputs of that
//     magnitude; on [0, 1] inputs the signal vanishes through the eight
//     layers and the net does not learn. See Render and MeanImage.
//   - Prepared (ImageNet-scale) data get the paper's own augmentation in
//     CropLoader: random 227×227 crops of the 256×256 images, reflections,
//     PCA colour noise (CropAugment) and the mean image subtracted at the
//     source position; evaluation takes the centre crop or the ten patches
//     (TenCrops). The small in-memory sets above have no colour to perturb.
//
// Determinism: the augmentation of image i in epoch e is a pure function of
// (seed, e, i) computed with a counter-based hash, and the epoch's order is a
// permutation drawn from rand.NewPCG(seed, e); so the batches do not depend on
// the number of loader workers.
package data
