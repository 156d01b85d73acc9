package native

import (
	"errors"
	"os"
	"reflect"
	"testing"
)

func TestFirst(t *testing.T) {
	var tried []string
	open := func(name string) (string, error) {
		tried = append(tried, name)
		if name == "good" {
			return "lib " + name, nil
		}
		return "", errors.New(name + ": no")
	}
	lib, err := First([]string{"a", "good", "b"}, "ENV", "", "X not found", open)
	if err != nil || lib != "lib good" || len(tried) != 2 {
		t.Errorf("First = %q, %v after %v; want lib good after a, good", lib, err, tried)
	}
	tried = nil
	_, err = First([]string{"a", "b"}, "ENV", "", "X not found", open)
	if err == nil || err.Error() != "X not found: a: no; b: no" {
		t.Errorf("none loads: %v", err)
	}
	tried = nil
	_, err = First([]string{"good"}, "ENV", "c", "X not found", open)
	if err == nil || err.Error() != "ENV=c not usable: c: no" || len(tried) != 1 {
		t.Errorf("override: %v after %v; want only the override tried", err, tried)
	}
}

// The test binary's own code is mapped from its executable.
func TestMappedPath(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	addr := reflect.ValueOf(TestMappedPath).Pointer()
	if got := MappedPath(addr, "fallback"); got != exe {
		t.Errorf("MappedPath(a function of the test) = %q, want the test binary %q", got, exe)
	}
	if got := MappedPath(0, "fallback"); got != "fallback" {
		t.Errorf("MappedPath(0) = %q, want the fallback", got)
	}
}
