package mpi

import (
	"fmt"
	"strconv"
)

// launch is what the environment says about how the process was started.
type launch struct {
	by   string // "mpirun", "srun" or "" when not started by a launcher
	size int    // the world size the launcher announces, or 0 when it does not say
	env  string // the variable that told, as NAME=value, for messages
}

// detect reads the launcher's variables through getenv. Open MPI's mpirun
// sets OMPI_COMM_WORLD_SIZE in every process it starts; a PMIx launcher
// (srun --mpi=pmix, Open MPI 5's prterun) sets PMIX_RANK. Either means
// MPI is to be loaded. srun without PMIx sets only SLURM_STEP_NUM_TASKS:
// with more than one task that is an error (the tasks could not find each
// other and would each train alone), with one it is a single-process run.
// Likewise MPICH's launchers (PMI_SIZE, without the two above) are refused.
func detect(getenv func(string) string) (launch, error) {
	if v := getenv("OMPI_COMM_WORLD_SIZE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return launch{}, fmt.Errorf("mpi: OMPI_COMM_WORLD_SIZE=%q is not a world size: start the trainer with Open MPI's mpirun", v)
		}
		return launch{by: "mpirun", size: n, env: "OMPI_COMM_WORLD_SIZE=" + v}, nil
	}
	if v := getenv("PMIX_RANK"); v != "" {
		by := "a PMIx launcher"
		if getenv("SLURM_STEP_ID") != "" {
			by = "srun"
		}
		return launch{by: by, env: "PMIX_RANK=" + v}, nil
	}
	if v := getenv("SLURM_STEP_NUM_TASKS"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 1 {
			return launch{}, fmt.Errorf("mpi: started by srun with %d tasks (SLURM_STEP_NUM_TASKS=%s) but without PMIx, so the tasks cannot find each other: run srun --mpi=pmix (Slurm built with PMIx; srun --mpi=list shows it), or run mpirun inside the allocation", n, v)
		}
	}
	if v := getenv("PMI_SIZE"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 1 {
			return launch{}, fmt.Errorf("mpi: started by a PMI launcher with %d processes (PMI_SIZE=%s), not Open MPI's: start the trainer with Open MPI's mpirun or srun --mpi=pmix (MPICH is not supported)", n, v)
		}
	}
	return launch{}, nil
}
