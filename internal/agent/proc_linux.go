package agent

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// procStat returns the fields of /proc/PID/stat after the command name:
// f[0] is field 3 (state), f[2] field 5 (pgrp), f[19] field 22 (starttime).
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	// The command name, in parentheses, may hold spaces: skip past it.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return nil, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return f, nil
}

// procStart returns the start time of process pid, in clock ticks since
// boot, to tell it from a later process that reused the pid.
func procStart(pid int) (uint64, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(f[19], 10, 64)
}
