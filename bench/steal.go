package bench

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"time"
)

// stolen is the CPU time the hypervisor has taken from this machine's CPUs
// so far (all CPUs summed; /proc/stat's steal, in clock ticks of 10 ms),
// zero where the kernel does not say. A first request that took long while
// CPU was stolen says more about the machine than about Wharf.
func stolen() time.Duration {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0
	}
	return stealOf(sc.Text())
}

// stealOf reads the steal field of /proc/stat's aggregate "cpu" line.
func stealOf(line string) time.Duration {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	ticks, err := strconv.ParseInt(f[8], 10, 64)
	if err != nil {
		return 0
	}
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	return time.Duration(ticks) * tick
}
