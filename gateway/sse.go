package gateway

import "bytes"

// DefaultMaxSSELine is the default bound on the data of one server-sent
// event that an SSEMeter keeps; a longer event is skipped.
const DefaultMaxSSELine = 1 << 20

// keepSSEBuffer is the buffer capacity an SSEMeter keeps between events;
// a larger buffer, grown for one long event, is dropped.
const keepSSEBuffer = 64 << 10

// SSEMeter reads the usage of a streamed chat completion (server-sent
// events of chat.completion.chunk objects) from the bytes of the stream.
// The caller passes the stream through unchanged and also writes every
// chunk to the meter; the meter never holds output back. Chunks may be
// split anywhere, mid-line included; lines may end in LF, CRLF or CR.
//
// Comment lines (": ping") and fields other than data are ignored, "data:
// [DONE]" ends the stream, and every event's "usage" object is read (the
// usage chunk has "choices": []). The characters of generated content are
// counted too, for an estimate when the upstream reports no usage.
//
// Memory is bounded: the data of an event longer than MaxLine bytes is
// skipped. Once its buffer has grown, the meter does not allocate. An
// SSEMeter is not safe for concurrent use; the zero value is ready to use.
type SSEMeter struct {
	// MaxLine bounds the data of one event in bytes; 0 means
	// DefaultMaxSSELine.
	MaxLine int
	// PromptEstimate is the prompt tokens Usage reports when the upstream
	// reported no usage.
	PromptEstimate int64

	// Line state.
	inField   bool // reading a field name
	field     [5]byte
	fieldLen  int  // bytes of the field name read, up to len(field)+1
	inData    bool // reading the value of a data field
	skipSpace bool // the next value byte is the optional space after ':'
	skipLF    bool // the last line ended in CR: a following LF belongs to it

	// Event state.
	data    []byte
	hasData bool
	tooLong bool

	scan   completionScan
	events int
	done   bool
}

// Write feeds p, the next bytes of the stream, to the meter. It never
// fails and always consumes all of p.
func (m *SSEMeter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if m.skipLF {
			m.skipLF = false
			if p[0] == '\n' {
				p = p[1:]
				continue
			}
		}
		eol := bytes.IndexAny(p, "\r\n")
		seg := p
		if eol >= 0 {
			seg = p[:eol]
		}
		m.line(seg)
		if eol < 0 {
			break
		}
		m.skipLF = p[eol] == '\r'
		m.endLine()
		p = p[eol+1:]
	}
	return n, nil
}

// line processes seg, part of the current line (without its end).
func (m *SSEMeter) line(seg []byte) {
	if !m.inField && !m.inData && m.fieldLen == 0 && len(seg) > 0 {
		if seg[0] == ':' {
			m.fieldLen = -1 // a comment: ignore the rest of the line
			return
		}
		m.inField = true
	}
	if m.fieldLen < 0 {
		return
	}
	if m.inField {
		colon := bytes.IndexByte(seg, ':')
		name := seg
		if colon >= 0 {
			name = seg[:colon]
		}
		for _, c := range name {
			if m.fieldLen < len(m.field) {
				m.field[m.fieldLen] = c
			}
			if m.fieldLen <= len(m.field) {
				m.fieldLen++
			}
		}
		if colon < 0 {
			return
		}
		m.inField = false
		if !m.isData() {
			m.fieldLen = -1 // another field: ignore its value
			return
		}
		m.startData()
		m.skipSpace = true
		seg = seg[colon+1:]
	}
	if m.inData && len(seg) > 0 {
		if m.skipSpace {
			m.skipSpace = false
			if seg[0] == ' ' {
				seg = seg[1:]
			}
		}
		m.appendData(seg)
	}
}

// isData reports whether the field name read is "data".
func (m *SSEMeter) isData() bool {
	return m.fieldLen == 4 && string(m.field[:4]) == "data"
}

// startData begins the value of a data field: values of several data lines
// of one event are joined by LF.
func (m *SSEMeter) startData() {
	m.inData = true
	if m.hasData {
		m.appendData([]byte{'\n'})
	}
	m.hasData = true
}

func (m *SSEMeter) appendData(b []byte) {
	if m.tooLong {
		return
	}
	limit := m.MaxLine
	if limit <= 0 {
		limit = DefaultMaxSSELine
	}
	if len(m.data)+len(b) > limit {
		m.tooLong = true
		m.data = m.data[:0]
		return
	}
	m.data = append(m.data, b...)
}

// endLine ends the current line: an empty line dispatches the event.
func (m *SSEMeter) endLine() {
	switch {
	case m.inField && m.isData():
		// "data" with no colon: a data field with an empty value.
		m.startData()
	case !m.inField && !m.inData && m.fieldLen == 0:
		m.dispatch()
	}
	m.inField, m.inData, m.skipSpace = false, false, false
	m.fieldLen = 0
}

// dispatch handles the event read so far.
func (m *SSEMeter) dispatch() {
	if m.hasData && !m.tooLong {
		m.events++
		if string(m.data) == "[DONE]" {
			m.done = true
		} else {
			m.scan.scanEvent(m.data)
		}
	}
	m.hasData, m.tooLong = false, false
	if cap(m.data) > keepSSEBuffer {
		m.data = nil
	} else {
		m.data = m.data[:0]
	}
}

// Usage returns the usage of the stream so far and whether the upstream
// reported it. When it did not, the usage is an estimate: PromptEstimate
// prompt tokens and a completion of a token per four generated characters.
func (m *SSEMeter) Usage() (Usage, bool) {
	return m.scan.result(m.PromptEstimate)
}

// Done reports whether the stream ended with "data: [DONE]".
func (m *SSEMeter) Done() bool { return m.done }

// Events returns the number of data events read.
func (m *SSEMeter) Events() int { return m.events }

// scanEvent reads one chunk into sc, keeping the last usage reported and
// adding the generated characters. Invalid JSON is ignored.
func (sc *completionScan) scanEvent(b []byte) {
	var ev completionScan
	if !ev.scan(b) {
		return
	}
	if ev.hasUsage {
		sc.usage, sc.hasUsage = ev.usage, true
	}
	sc.chars += ev.chars
}
