package benchkit

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"os/exec"
)

// PortBase returns the first of n ports chosen at random from 20000 to
// 60000, so that runs, and tests running at the same time, rarely meet;
// the callers skip ports that are taken anyway.
func PortBase(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(40000-n)))
	if err != nil {
		panic(err)
	}
	return 20000 + int(v.Int64())
}

// Require checks that every one of bins can be run.
func Require(bins ...string) error {
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("%s is required: %v", bin, err)
		}
	}
	return nil
}
