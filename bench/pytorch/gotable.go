//go:build ignore

// gotable prints model.Build's layer table for a net and options, for
// parity.py --self-test --go-table to compare with alexnet.py's, over every
// option the Go side takes (trainer inspect exposes only some of them):
//
//	go run bench/pytorch/gotable.go NET CHANNELS CLASSES LRN ACTIVATION POOL
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/alexnet-go/trainer/model"
)

func main() {
	if len(os.Args) != 7 {
		fmt.Fprintln(os.Stderr, "usage: gotable NET CHANNELS CLASSES LRN ACTIVATION POOL")
		os.Exit(2)
	}
	ch, err1 := strconv.Atoi(os.Args[2])
	cl, err2 := strconv.Atoi(os.Args[3])
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "gotable: CHANNELS and CLASSES are numbers")
		os.Exit(2)
	}
	n, err := model.Build(os.Args[1], model.Options{Channels: ch, Classes: cl, LRN: os.Args[4], Activation: os.Args[5], Pool: os.Args[6]})
	if err != nil {
		fmt.Fprintln(os.Stderr, "gotable:", err)
		os.Exit(1)
	}
	fmt.Print(n.Describe())
}
