package mpi

import (
	"strings"
	"testing"
)

func TestDetect(t *testing.T) {
	for _, c := range []struct {
		env     map[string]string
		by      string
		size    int
		errWant string // in the error; "" for none
	}{
		{env: nil},
		{env: map[string]string{"OMPI_COMM_WORLD_SIZE": "4", "PMIX_RANK": "1"}, by: "mpirun", size: 4},
		{env: map[string]string{"OMPI_COMM_WORLD_SIZE": "x"}, errWant: `OMPI_COMM_WORLD_SIZE="x" is not a world size`},
		{env: map[string]string{"PMIX_RANK": "3", "SLURM_STEP_ID": "0", "SLURM_STEP_NUM_TASKS": "8"}, by: "srun"},
		{env: map[string]string{"PMIX_RANK": "0"}, by: "a PMIx launcher"},
		{env: map[string]string{"SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"}},
		{env: map[string]string{"SLURM_STEP_NUM_TASKS": "2"}, errWant: "srun --mpi=pmix"},
		{env: map[string]string{"PMI_SIZE": "2", "PMI_RANK": "1"}, errWant: "MPICH is not supported"},
		{env: map[string]string{"PMI_SIZE": "1"}},
	} {
		ln, err := detect(func(k string) string { return c.env[k] })
		switch {
		case c.errWant != "":
			if err == nil || !strings.Contains(err.Error(), c.errWant) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%v: error %v, want one line with %q", c.env, err, c.errWant)
			}
		case err != nil:
			t.Errorf("%v: %v", c.env, err)
		case ln.by != c.by || ln.size != c.size:
			t.Errorf("%v: by %q size %d, want %q %d", c.env, ln.by, ln.size, c.by, c.size)
		}
	}
}

// Without a launcher Init loads nothing and returns a world of one.
func TestInitAlone(t *testing.T) {
	for _, k := range []string{"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "SLURM_STEP_NUM_TASKS", "PMI_SIZE"} {
		t.Setenv(k, "")
	}
	t.Setenv(LibEnv, "/nonexistent/libmpi.so.40") // would fail if loaded
	w, err := Init(Options{})
	if w != nil || err != nil {
		t.Fatalf("Init() = %v, %v; want nil, nil", w, err)
	}
	if w.Rank() != 0 || w.Size() != 1 || w.Close() != nil || w.Barrier() != nil {
		t.Errorf("a nil World is not a world of one")
	}
	x := []float32{1.5}
	if err := w.AllReduceFloat32(x); err != nil || x[0] != 1.5 {
		t.Errorf("AllReduceFloat32 alone: %v, %v", x, err)
	}
	g, err := w.NewGroup()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Reduce(t.Context(), 0, nil, nil); err != nil {
		t.Errorf("Reduce alone: %v", err)
	}
}

// Started by mpirun without a usable libmpi, Init says what to install.
func TestInitNoLibrary(t *testing.T) {
	t.Setenv("OMPI_COMM_WORLD_SIZE", "2")
	t.Setenv(LibEnv, "/nonexistent/libmpi.so.40")
	w, err := Init(Options{})
	want := "mpi: started by mpirun (OMPI_COMM_WORLD_SIZE=2) but ALEXNET_LIBMPI=/nonexistent/libmpi.so.40 not usable"
	if w != nil || err == nil || !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "apt-get install libopenmpi3") {
		t.Fatalf("Init() = %v, %v; want an error starting %q that says what to install", w, err, want)
	}
}
