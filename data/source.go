package data

import (
	"bufio"
	"errors"
	"fmt"
	"image"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// DecodeImage decodes one image file of a Source. Prepare calls it from
// several goroutines at once, so it must be safe for concurrent use.
//
// The default is DecodeImageFile: the standard library's PNG, JPEG and GIF
// decoders (image/png, image/jpeg, image/gif), with one-line *FileError
// errors and a bound on the pixel count. A faster decoder may replace it
// (set it before calling Prepare); anything that returns an error is
// skipped and listed in the report.
var DecodeImage func(path string) (image.Image, error) = DecodeImageFile

// Source is an image classification data set stored as image files in the
// ImageNet layout:
//
//	SRC/train/<class>/*.{jpg,jpeg,png}    one folder per class
//	SRC/val/<class>/*.{jpg,jpeg,png}      either class folders, as train,
//	SRC/val/*.{jpg,jpeg,png}              or flat files with a labels file,
//	SRC/val/labels.txt or SRC/val.txt     SRC/val/labels.txt preferred
//
// Image files are recognised by their extension, .jpg, .jpeg or .png in any
// case; other files are ignored, as are names starting with a dot and
// folders inside a class folder. The class names are the train folder
// names, sorted bytewise; label i is Classes[i].
//
// The labels file has one line per validation image, "FILENAME LABEL":
// FILENAME relative to SRC/val (slash-separated, it may contain spaces),
// then whitespace, then LABEL, the last field: a class name (a train folder
// name) or a class index, 0-based into the sorted class names. A name wins
// over an index where a class is named by digits. Blank lines and lines
// starting with # are ignored. Every listed file must exist, none may be
// listed twice, and every image file in SRC/val must be listed.
//
// SRC/val is optional: without it Val is empty.
type Source struct {
	// Dir is the source directory, as given.
	Dir string
	// Classes names the classes by label: the sorted train folder names.
	Classes []string
	// Train and Val list the images: train by class then file name, val by
	// file name (flat) or by class then file name (class folders).
	Train, Val []SourceImage
	// Labels is the validation labels file used, relative to Dir
	// ("val/labels.txt" or "val.txt"); empty for class folders or no val.
	Labels string
}

// SourceImage is one image file of a Source.
type SourceImage struct {
	// Path is the file's path relative to Source.Dir, slash-separated:
	// "train/n01440764/n01440764_10026.JPEG".
	Path string
	// Label is the image's class index.
	Label int
	// Bytes and ModTime (Unix nanoseconds) identify this version of the
	// file, so that a resumed Prepare can tell whether the source changed.
	Bytes, ModTime int64
}

const hintSource = "want SRC/train/<class>/*.jpg, one folder per class, and optionally SRC/val (see trainer prepare --help)"

// isImageName reports whether name has an image extension we read.
func isImageName(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".jpg", ".jpeg", ".png":
		return true
	}
	return false
}

// srcEntry is a directory entry with symbolic links followed.
type srcEntry struct {
	name          string
	dir           bool
	bytes, mtime  int64
	regular, skip bool
}

// readSourceDir lists dir, sorted by name, following symbolic links.
func readSourceDir(dir string) ([]srcEntry, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		kind := ErrFormat
		if errors.Is(err, os.ErrNotExist) {
			kind = ErrNotFound
		}
		return nil, &FileError{Path: dir, Problem: openProblem(err), Hint: hintSource, Kind: kind, Err: err}
	}
	out := make([]srcEntry, 0, len(des))
	for _, de := range des {
		e := srcEntry{name: de.Name()}
		if strings.HasPrefix(e.name, ".") {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, e.name)) // follows links
		if err != nil {
			// A dangling link or an unreadable entry: keep it as a file so
			// that, if it has an image name, decoding reports it.
			e.regular = true
		} else {
			e.dir = fi.IsDir()
			e.regular = fi.Mode().IsRegular()
			e.bytes, e.mtime = fi.Size(), fi.ModTime().UnixNano()
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b srcEntry) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// listClassDir returns the image files of one class folder, sorted. rel is
// the folder's path relative to the source, slash-separated.
func listClassDir(root, rel string, label int) ([]SourceImage, error) {
	dir := filepath.Join(root, filepath.FromSlash(rel))
	es, err := readSourceDir(dir)
	if err != nil {
		return nil, err
	}
	var imgs []SourceImage
	others := 0
	for _, e := range es {
		switch {
		case e.dir:
		case isImageName(e.name):
			imgs = append(imgs, SourceImage{Path: path.Join(rel, e.name), Label: label, Bytes: e.bytes, ModTime: e.mtime})
		default:
			others++
		}
	}
	if len(imgs) == 0 {
		problem := "class folder has no images"
		if others > 0 {
			problem += fmt.Sprintf(" (%d other files: only .jpg, .jpeg and .png are read)", others)
		}
		return nil, &FileError{Path: dir, Problem: problem, Hint: "add images or remove the folder", Kind: ErrFormat}
	}
	return imgs, nil
}

// OpenSource lists the image files of an ImageNet-style source directory
// (see Source). It reads only directory entries and the labels file, not
// the images. Errors are *FileError naming the file or folder: a missing
// SRC/train, a class folder without images, a labels file line that names
// no file or no class, a validation image without a label.
func OpenSource(dir string) (*Source, error) {
	st, err := os.Stat(dir)
	if err != nil {
		kind := ErrFormat
		if errors.Is(err, os.ErrNotExist) {
			kind = ErrNotFound
		}
		return nil, &FileError{Path: dir, Problem: "source folder: " + openProblem(err), Hint: hintSource, Kind: kind, Err: err}
	}
	if !st.IsDir() {
		return nil, &FileError{Path: dir, Problem: "not a folder", Hint: hintSource, Kind: ErrFormat}
	}
	s := &Source{Dir: dir}
	trainDir := filepath.Join(dir, "train")
	es, err := readSourceDir(trainDir)
	if err != nil {
		return nil, err
	}
	for _, e := range es {
		if e.dir {
			s.Classes = append(s.Classes, e.name)
		}
	}
	if len(s.Classes) == 0 {
		return nil, &FileError{Path: trainDir, Problem: "no class folders, so no images", Hint: hintSource, Kind: ErrFormat}
	}
	for label, c := range s.Classes {
		imgs, err := listClassDir(dir, "train/"+c, label)
		if err != nil {
			return nil, err
		}
		s.Train = append(s.Train, imgs...)
	}
	if err := s.openVal(); err != nil {
		return nil, err
	}
	return s, nil
}

// openVal lists SRC/val.
func (s *Source) openVal() error {
	valDir := filepath.Join(s.Dir, "val")
	st, err := os.Stat(valDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &FileError{Path: valDir, Problem: openProblem(err), Kind: ErrFormat, Err: err}
	}
	if !st.IsDir() {
		return &FileError{Path: valDir, Problem: "not a folder", Hint: hintSource, Kind: ErrFormat}
	}
	for _, rel := range []string{"val/labels.txt", "val.txt"} {
		if fi, err := os.Stat(filepath.Join(s.Dir, filepath.FromSlash(rel))); err == nil && fi.Mode().IsRegular() {
			s.Labels = rel
			return s.openFlatVal(valDir)
		}
	}
	es, err := readSourceDir(valDir)
	if err != nil {
		return err
	}
	images := 0
	for _, e := range es {
		switch {
		case e.dir:
			label, ok := slices.BinarySearch(s.Classes, e.name)
			if !ok {
				return &FileError{Path: filepath.Join(valDir, e.name), Problem: "validation class folder names no training class (no folder " + filepath.Join(s.Dir, "train", e.name) + ")",
					Hint: "validation class folders must have the names of the train folders", Kind: ErrFormat}
			}
			imgs, err := listClassDir(s.Dir, "val/"+e.name, label)
			if err != nil {
				return err
			}
			s.Val = append(s.Val, imgs...)
		case isImageName(e.name):
			images++
		}
	}
	if images > 0 {
		return &FileError{Path: valDir, Problem: fmt.Sprintf("%d images but no labels file (looked for %s and %s)", images, filepath.Join(valDir, "labels.txt"), filepath.Join(s.Dir, "val.txt")),
			Hint: "write one line \"FILENAME CLASS\" per image to val/labels.txt, or put the images in class folders", Kind: ErrFormat}
	}
	return nil
}

// openFlatVal lists the flat validation folder valDir against the labels
// file s.Labels.
func (s *Source) openFlatVal(valDir string) error {
	lpath := filepath.Join(s.Dir, filepath.FromSlash(s.Labels))
	f, err := os.Open(lpath)
	if err != nil {
		return &FileError{Path: lpath, Problem: openProblem(err), Kind: ErrFormat, Err: err}
	}
	defer f.Close()
	const hint = "each line is \"FILENAME LABEL\", FILENAME relative to SRC/val, LABEL a train folder name or a 0-based class index"
	labels := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		bad := func(format string, args ...any) error {
			return &FileError{Path: lpath, Problem: fmt.Sprintf("line %d: ", n) + fmt.Sprintf(format, args...), Hint: hint, Kind: ErrFormat}
		}
		i := strings.LastIndexAny(line, " \t")
		if i < 0 {
			return bad("%q has no label", line)
		}
		name, lab := path.Clean(strings.TrimSpace(line[:i])), line[i+1:]
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return bad("file name %q is outside SRC/val", name)
		}
		label, ok := slices.BinarySearch(s.Classes, lab)
		if !ok {
			k, err := strconv.Atoi(lab)
			if err != nil || k < 0 || k >= len(s.Classes) {
				return bad("label %q is neither a class name (a folder in %s) nor a class index in [0, %d)", lab, filepath.Join(s.Dir, "train"), len(s.Classes))
			}
			label = k
		}
		if _, dup := labels[name]; dup {
			return bad("%s is listed twice", name)
		}
		labels[name] = label
	}
	if err := sc.Err(); err != nil {
		return &FileError{Path: lpath, Problem: "read error: " + err.Error(), Kind: ErrFormat, Err: err}
	}
	es, err := readSourceDir(valDir)
	if err != nil {
		return err
	}
	var unlisted []string
	for _, e := range es {
		if !e.dir && isImageName(e.name) {
			if _, ok := labels[e.name]; !ok {
				unlisted = append(unlisted, e.name)
			}
		}
	}
	if len(unlisted) > 0 {
		return &FileError{Path: lpath, Problem: fmt.Sprintf("%d images in %s have no label, e.g. %s", len(unlisted), valDir, unlisted[0]), Hint: hint, Kind: ErrFormat}
	}
	names := make([]string, 0, len(labels))
	for name := range labels {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fi, err := os.Stat(filepath.Join(valDir, filepath.FromSlash(name)))
		if err != nil || fi.IsDir() {
			problem := "not found"
			if err == nil {
				problem = "is a folder"
			}
			return &FileError{Path: lpath, Problem: fmt.Sprintf("lists %s: %s", filepath.Join(valDir, filepath.FromSlash(name)), problem), Hint: hint, Kind: ErrFormat}
		}
		s.Val = append(s.Val, SourceImage{Path: "val/" + name, Label: labels[name], Bytes: fi.Size(), ModTime: fi.ModTime().UnixNano()})
	}
	if len(s.Val) == 0 {
		return &FileError{Path: lpath, Problem: "no images listed", Hint: hint, Kind: ErrFormat}
	}
	return nil
}
