package necp

// TEMPORARY stubs so that dependants compile while the codec is written.
// The codec author replaces this file.

import (
	"errors"
	"io"
)

var ErrMalformed = errors.New("necp: malformed message")

func (m *Message) AppendBinary(b []byte) ([]byte, error) { panic("todo") }
func (m *Message) MarshalBinary() ([]byte, error)        { return m.AppendBinary(nil) }
func (m *Message) UnmarshalBinary(b []byte) error        { panic("todo") }

type Reader struct{ r io.Reader }

func NewReader(r io.Reader) *Reader            { return &Reader{r: r} }
func (r *Reader) ReadMessage(m *Message) error { panic("todo") }
func WriteMessage(w io.Writer, m *Message) error {
	b, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
