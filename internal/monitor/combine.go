package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// A combination measures one service with several monitors and reports
// the lowest health among them:
//
//	monitor = cpuload, http
//	url = http://127.0.0.1/health
//
// The lowest, because each monitor watches something the service needs:
// a realserver whose CPU is idle but whose web server answers 503 is not
// healthy, and one that answers quickly on a saturated CPU is busy. The
// block holds the keys of all its monitors; a key two of them take
// (timeout) is given to both, "interval" is the combination's own (one
// sampler runs them all, concurrently, so a sample takes as long as the
// slowest of them). One monitor kind can appear once: two http checks
// would need two urls, which one block cannot tell apart.

// maxMembers bounds a combination: beyond a few signals the lowest is
// dominated by whichever is noisiest, and a long list is more likely a
// mistake than a design.
const maxMembers = 4

// Parse reads the value of a [service] block's "monitor" key: one kind,
// with or without ".so", or a combination, kinds separated by commas or
// blanks. The Kind it returns lists the keys the block may have, for the
// config reader, and builds the monitor, for New.
func Parse(v string) (Kind, error) {
	names := strings.FieldsFunc(strings.ToLower(v), func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	if len(names) == 0 {
		return Kind{}, fmt.Errorf("empty monitor (want one of %s, or several separated by commas)", strings.Join(Names(), ", "))
	}
	var members []Kind
	for _, n := range names {
		k, ok := kinds[CanonicalName(n)]
		if !ok {
			return Kind{}, fmt.Errorf("unknown monitor %q (want one of %s, with or without .so, or several separated by commas)", n, strings.Join(Names(), ", "))
		}
		if slices.ContainsFunc(members, func(m Kind) bool { return m.Name == k.Name }) {
			return Kind{}, fmt.Errorf("monitor %s is listed twice (a combination takes each monitor once)", k.Name)
		}
		members = append(members, k)
	}
	if len(members) == 1 {
		k, _ := Lookup(members[0].Name)
		return k, nil
	}
	if len(members) > maxMembers {
		return Kind{}, fmt.Errorf("%d monitors combined (at most %d)", len(members), maxMembers)
	}
	c := Kind{members: members}
	var n []string
	for _, m := range members {
		n = append(n, m.Name)
		for _, spec := range m.Keys {
			i := slices.IndexFunc(c.Keys, func(s KeySpec) bool { return s.Name == spec.Name })
			switch {
			case i < 0:
				c.Keys = append(c.Keys, spec)
			case c.Keys[i].Type != spec.Type:
				// No two built-in kinds do this; the check keeps it so.
				return Kind{}, fmt.Errorf("monitors %s and %s cannot be combined: both take %q, with different values", n[0], m.Name, spec.Name)
			default:
				c.Keys[i].Required = c.Keys[i].Required || spec.Required
				c.Keys[i].Min = max(c.Keys[i].Min, spec.Min)
			}
		}
	}
	c.Name = strings.Join(n, ",")
	c.Keys = append(c.Keys, commonKeys...)
	c.build = func(params map[string]string, opts Options, log *slog.Logger) (Monitor, error) {
		return newCombination(c, params, opts, log)
	}
	return c, nil
}

// memberParams are the keys of params that member m takes.
func memberParams(m Kind, params map[string]string) map[string]string {
	out := map[string]string{}
	for _, spec := range m.Keys {
		if v, ok := params[spec.Name]; ok {
			out[spec.Name] = v
		}
	}
	return out
}

type combination struct {
	name    string
	members []Monitor
}

func newCombination(k Kind, params map[string]string, opts Options, log *slog.Logger) (*combination, error) {
	c := &combination{name: k.Name}
	for _, mk := range k.members {
		m, err := mk.build(memberParams(mk, params), opts, log.With("member", mk.Name))
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("%s: %w", mk.Name, err)
		}
		c.members = append(c.members, m)
	}
	return c, nil
}

func (c *combination) Name() string { return c.name }

func (c *combination) Close() error {
	var errs []error
	for _, m := range c.members {
		errs = append(errs, m.Close())
	}
	return errors.Join(errs...)
}

// Measure runs the members concurrently and combines their healths
// (combine).
func (c *combination) Measure(ctx context.Context) (int, error) {
	healths := make([]int, len(c.members))
	errs := make([]error, len(c.members))
	var wg sync.WaitGroup
	for i, m := range c.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			healths[i], errs[i] = m.Measure(ctx)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	names := make([]string, len(c.members))
	for i, m := range c.members {
		names[i] = m.Name()
	}
	return combine(names, healths, errs)
}

// combine is the lowest health, unknown when a member's health is unknown
// (its value could be the lowest), except that a member reporting 0 makes
// it 0 whatever the others say: nothing is lower. So a web server that
// refuses connections takes the realserver out even while the CPU
// monitor is between two samples.
func combine(names []string, healths []int, errs []error) (int, error) {
	low, unknown := 101, []error(nil)
	for i := range healths {
		if errs[i] != nil {
			unknown = append(unknown, fmt.Errorf("%s: %w", names[i], errs[i]))
			continue
		}
		low = min(low, healths[i])
	}
	switch {
	case low == 0:
		return 0, nil
	case unknown != nil:
		return 0, errors.Join(unknown...)
	}
	return low, nil
}
