package gateway

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
)

// The link opens with one JSON line each way, after the TLS handshake: the
// agent's hello, the gateway's welcome. Then the agent protocol runs on the
// same connection, the gateway's side being the RPC client.
type hello struct {
	Launch string `json:"launch"`
	Token  string `json:"token,omitempty"` // bootstrap only
	Munge  string `json:"munge,omitempty"` // bootstrap only
	CSR    []byte `json:"csr"`             // DER certificate request
}

type welcome struct {
	Cert    []byte `json:"cert,omitempty"` // DER client certificate
	Code    string `json:"code,omitempty"` // a Refuse* code
	Message string `json:"message,omitempty"`
}

// maxLine bounds a hello or welcome line.
const maxLine = 16 << 10

// readLine reads one JSON line of at most maxLine bytes into v without
// reading past it (the agent protocol follows on the same stream).
func readLine(c net.Conn, v any) error {
	br := bufio.NewReaderSize(&oneByte{c}, 1)
	var line []byte
	for {
		b, err := br.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && len(line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if b == '\n' {
			break
		}
		if len(line) >= maxLine {
			return fmt.Errorf("line over %d bytes", maxLine)
		}
		line = append(line, b)
	}
	return json.Unmarshal(line, v)
}

// oneByte reads one byte at a time, so nothing after the line is consumed.
type oneByte struct{ r io.Reader }

func (o *oneByte) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

func writeLine(c net.Conn, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = c.Write(append(data, '\n'))
	return err
}
