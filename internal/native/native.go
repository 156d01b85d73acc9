// Package native picks the first native library that loads from a list of
// candidates, as the CPU device's BLAS and the JPEG decoder both do before
// falling back to pure Go.
package native

import (
	"errors"
	"strings"
)

// First returns the first of names that open accepts, or, when override
// is not empty (the value of the environment variable env), that one
// alone. Without one its error reads "MISSING: …" (or "ENV=OVERRIDE not
// usable: …") followed by every loader's message, for the caller's
// description of its fallback.
func First[T any](names []string, env, override, missing string, open func(string) (T, error)) (T, error) {
	why := missing
	if override != "" {
		names, why = []string{override}, env+"="+override+" not usable"
	}
	var errs []string
	for _, name := range names {
		lib, err := open(name)
		if err == nil {
			return lib, nil
		}
		errs = append(errs, err.Error())
	}
	var zero T
	return zero, errors.New(why + ": " + strings.Join(errs, "; "))
}
