//go:build !linux

package master

import (
	"context"
	"errors"
	"sync"

	"github.com/lvs-feedbackd/feedbackd/internal/necp"
)

// poller exists only on Linux (epoll); elsewhere every session keeps its
// own goroutine.
type poller struct{ done chan struct{} }

func newPoller(*Master, *sync.WaitGroup) (*poller, error) {
	return nil, errors.New("no epoll on this system")
}

func (p *poller) adopt(*session) bool    { return false }
func (p *poller) post(*session) bool     { return false }
func (p *poller) run(context.Context)    {}
func (p *poller) write(s *session) error { return errors.New("no poller") }
