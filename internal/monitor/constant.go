package monitor

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// constant reports the same configured health on every sample; useful for
// a realserver that should take a fixed share of the load, and in tests.
type constant struct{ value int }

func newConstant(params map[string]string) (*constant, error) {
	v, ok := params["value"]
	if !ok {
		return nil, fmt.Errorf("value is required")
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 || n > 100 {
		return nil, fmt.Errorf("value: %q is not an integer from 0 to 100", v)
	}
	return &constant{value: n}, nil
}

func (c *constant) Name() string                             { return "constant" }
func (c *constant) Measure(ctx context.Context) (int, error) { return c.value, nil }
func (c *constant) Close() error                             { return nil }
