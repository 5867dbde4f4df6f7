//go:build !linux

package ipvs

import (
	"errors"
	"log/slog"
)

// Kernel exists only on Linux; elsewhere NewKernel fails, so that the rest
// of feedbackd (and its tests with Memory) still builds on a developer's
// non-Linux machine.
type Kernel struct{ IPVS }

var errNoIPVS = errors.New("ipvs: the kernel IPVS interface exists only on Linux")

// NewKernel always fails on this platform.
func NewKernel(log *slog.Logger) (*Kernel, error) { return nil, errNoIPVS }

// NewKernelNetns always fails on this platform.
func NewKernelNetns(netnsPath string, log *slog.Logger) (*Kernel, error) { return nil, errNoIPVS }
