package data

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"os"
)

// maxImagePixels bounds the images DecodeImageFile accepts, so that a small
// file claiming a huge image (a decompression bomb) fails before it is
// decoded.
const maxImagePixels = 1 << 27

// imageFormats maps each format's magic prefix to its name.
var imageFormats = []struct{ magic, name string }{
	{"\x89PNG\r\n\x1a\n", "PNG"},
	{"\xff\xd8", "JPEG"},
	{"GIF87a", "GIF"},
	{"GIF89a", "GIF"},
}

// decoders are the formats DecodeImageFile reads. Importing their packages
// also registers them with image.Decode.
var decoders = map[string]struct {
	decode func(io.Reader) (image.Image, error)
	config func(io.Reader) (image.Config, error)
}{
	"PNG":  {png.Decode, png.DecodeConfig},
	"JPEG": {jpeg.Decode, jpeg.DecodeConfig},
	"GIF":  {gif.Decode, gif.DecodeConfig},
}

// eofReader notes whether a read reached the end of r (a *bufio.Reader
// over a file, a *bytes.Reader over a JPEG in memory). It is an
// io.ByteReader so that the decoders read it directly, not through a
// buffer of their own that would read ahead to the end of a small file.
type eofReader struct {
	r interface {
		io.Reader
		io.ByteReader
	}
	eof bool
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		e.eof = true
	}
	return n, err
}

func (e *eofReader) ReadByte() (byte, error) {
	b, err := e.r.ReadByte()
	if err == io.EOF {
		e.eof = true
	}
	return b, err
}

// DecodeImageFile reads a PNG, JPEG or GIF image (the first frame of an
// animated GIF). Errors are *FileError, one line naming the file, wrapping
// ErrNotFound when it cannot be opened and ErrFormat when it is not a whole
// image of those formats: "not a PNG, JPEG or GIF image", "truncated PNG
// image", "corrupt JPEG image: …".
func DecodeImageFile(path string) (image.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &FileError{Path: path, Problem: openProblem(err), Kind: ErrNotFound, Err: err}
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, &FileError{Path: path, Problem: "is a directory, want a PNG, JPEG or GIF image", Kind: ErrNotFound}
	}
	br := bufio.NewReader(f)
	head, err := br.Peek(8)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, &FileError{Path: path, Problem: fmt.Sprintf("read error: %v", err), Kind: ErrFormat, Err: err}
	}
	format := ""
	for _, ft := range imageFormats {
		if bytes.HasPrefix(head, []byte(ft.magic)) {
			format = ft.name
		}
	}
	switch {
	case len(head) == 0:
		return nil, &FileError{Path: path, Problem: "empty file, want a PNG, JPEG or GIF image", Kind: ErrFormat}
	case format == "":
		return nil, &FileError{Path: path, Problem: "not a PNG, JPEG or GIF image" + describeImageMagic(head), Kind: ErrFormat, Err: image.ErrFormat}
	}
	dec := decoders[format]
	// The decoders read through eofReader, which notes whether they asked
	// for bytes past the end: a file they could not finish for want of data
	// is truncated, whatever the decoder's own error says.
	er := &eofReader{r: br}
	bad := func(err error) error {
		if er.eof || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return &FileError{Path: path, Problem: "truncated " + format + " image", Kind: ErrFormat, Err: err}
		}
		return &FileError{Path: path, Problem: fmt.Sprintf("corrupt %s image: %v", format, err), Kind: ErrFormat, Err: err}
	}
	cfg, err := dec.config(er)
	if err != nil {
		return nil, bad(err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || cfg.Width > maxImagePixels/cfg.Height {
		return nil, &FileError{Path: path, Problem: fmt.Sprintf("%s image of %d×%d pixels: want 1 to %d pixels", format, cfg.Width, cfg.Height, maxImagePixels), Kind: ErrFormat}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, &FileError{Path: path, Problem: fmt.Sprintf("read error: %v", err), Kind: ErrFormat, Err: err}
	}
	br.Reset(f)
	er.eof = false
	img, err := dec.decode(er)
	if err != nil {
		return nil, bad(err)
	}
	return img, nil
}

// openProblem is an os.Open error without the path, which FileError adds.
func openProblem(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// describeImageMagic names a few formats people try instead.
func describeImageMagic(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("BM")):
		return " (it looks like a BMP image: convert it to PNG)"
	case bytes.HasPrefix(head, []byte("RIFF")):
		return " (it looks like a WebP image: convert it to PNG)"
	case bytes.HasPrefix(head, []byte("II*\x00")), bytes.HasPrefix(head, []byte("MM\x00*")):
		return " (it looks like a TIFF image: convert it to PNG)"
	case len(head) >= 8 && bytes.Equal(head[4:8], []byte("ftyp")):
		return " (it looks like a HEIF/AVIF image: convert it to PNG)"
	}
	return ""
}
