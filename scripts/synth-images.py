#!/usr/bin/env python3
"""synth-images.py: a folder of random RGB PNG images for trainer prepare.

    python3 synth-images.py OUT [--train N] [--val N] [--classes K] [--size S]

Writes OUT/train/nKK/I.png (N images over K classes) and OUT/val/nKK/I.png,
S×S pixels each (default 3000, 200, 10, 256), with the standard library
only: what scripts/gpu-check.sh feeds `trainer prepare` to time training
end to end from prepared shards on a machine that has no data set. The
pixels are a class-dependent gradient plus noise, so the PNGs do not
compress to nothing and decoding costs what a photo's would.
"""
import argparse
import multiprocessing
import os
import random
import struct
import sys
import zlib


def png(path, size, rows):
    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xffffffff)
    raw = b"".join(b"\x00" + r for r in rows)  # filter type 0 per row
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 1)))
        f.write(chunk(b"IEND", b""))


def write(job):
    path, k, size, seed = job
    n = 3 * size * size
    base = BASES[k]
    noise = random.Random(seed).getrandbits(8 * n) & MASK  # 7 bits of noise a byte
    img = (base ^ noise).to_bytes(n, "little")
    png(path, size, [img[3 * size * y:3 * size * (y + 1)] for y in range(size)])


def init(classes, size):
    global BASES, MASK
    n = 3 * size * size
    MASK = int.from_bytes(b"\x7f" * n, "little")
    BASES = []
    for k in range(classes):
        row = [bytes((((x * (k + 1) + y) // 2 + 20 * k) & 0x7f) | 0x80 * (k & 1) for x in range(3 * size)) for y in range(size)]
        BASES.append(int.from_bytes(b"".join(row), "little"))


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--train", type=int, default=3000)
    p.add_argument("--val", type=int, default=200)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--size", type=int, default=256)
    a = p.parse_args(argv)
    jobs = []
    for split, n in (("train", a.train), ("val", a.val)):
        for i in range(n):
            k = i % a.classes
            d = os.path.join(a.out, split, "n%02d" % k)
            os.makedirs(d, exist_ok=True)
            jobs.append((os.path.join(d, "%d.png" % i), k, a.size, len(jobs) + 1))
    with multiprocessing.Pool(initializer=init, initargs=(a.classes, a.size)) as pool:
        for _ in pool.imap_unordered(write, jobs, chunksize=16):
            pass
    print("synth-images: %d train, %d val images of %dx%d in %s" % (a.train, a.val, a.size, a.size, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
