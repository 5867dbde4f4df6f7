package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// MaxMessage bounds a request or a response on the wire. A status of
// 20 000 destinations is about 8 MB of JSON; requests are tiny.
const (
	MaxRequest  = 64 << 10
	MaxResponse = 256 << 20
)

// Do sends one request to the master's control socket at path and returns
// its response. A response with OK false is returned with an error that
// carries the master's message.
func Do(ctx context.Context, path string, req Request) (*Response, error) {
	if req.Version == 0 {
		req.Version = Version
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the master's control socket: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(30 * time.Second))
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return nil, fmt.Errorf("sending the request: %w", err)
	}
	var resp Response
	dec := json.NewDecoder(io.LimitReader(c, MaxResponse))
	if err := dec.Decode(&resp); err != nil {
		return nil, fmt.Errorf("reading the master's answer: %w", err)
	}
	if resp.Version > Version {
		return &resp, fmt.Errorf("the master answers with schema version %d; this feedbackctl knows %d", resp.Version, Version)
	}
	if !resp.OK {
		return &resp, &Error{Msg: resp.Error, Denied: resp.Denied}
	}
	return &resp, nil
}

// Error is a request the master refused or could not carry out.
type Error struct {
	Msg    string
	Denied bool // the caller may not change state
}

func (e *Error) Error() string { return e.Msg }

// IsDenied reports whether err is a permission refusal.
func IsDenied(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Denied
}
