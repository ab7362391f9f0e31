package registry

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
)

// The journal and the checkpoint are files of frames after an 8-byte magic:
//
//	length  uint32, little endian: bytes of payload
//	crc     uint32, little endian: CRC-32C (Castagnoli) of length and payload
//	payload length bytes of JSON
//
// A frame is written whole then fsynced; a crash can only leave the
// frames of the last write short or partly written, at the end of the file,
// which the CRC or the length tells apart from complete ones (see
// replay.torn). Damage elsewhere leaves the frames after it readable: their
// lengths and CRCs let a reader find them again (see replay). CRC-32C because it is what ext4, iSCSI and
// PostgreSQL's WAL use, and is computed in hardware on amd64 and arm64.
const (
	frameHeader     = 8
	maxFramePayload = 1 << 30

	journalMagic    = "ANNJRNL1"
	checkpointMagic = "ANNCKPT1"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendFrame appends payload, framed, to dst.
func appendFrame(dst, payload []byte) []byte {
	var h [frameHeader]byte
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(payload)))
	crc := crc32.Update(crc32.Checksum(h[0:4], castagnoli), castagnoli, payload)
	binary.LittleEndian.PutUint32(h[4:8], crc)
	return append(append(dst, h[:]...), payload...)
}

// A damageError says where and why a file of frames stops being readable.
type damageError struct {
	Offset int64  // from the start of the file, magic included
	Reason string // "truncated frame", "checksum mismatch", ...
}

func (e *damageError) Error() string {
	return fmt.Sprintf("offset %d: %s", e.Offset, e.Reason)
}

// nextFrame decodes the frame at the start of data. It returns the payload
// and the frame's whole length, or a damage error with Offset relative to
// data.
func nextFrame(data []byte) (payload []byte, n int, err *damageError) {
	if len(data) < frameHeader {
		return nil, 0, &damageError{Reason: fmt.Sprintf("truncated frame header (%d of %d bytes)", len(data), frameHeader)}
	}
	length := binary.LittleEndian.Uint32(data[0:4])
	if length > maxFramePayload {
		return nil, 0, &damageError{Reason: fmt.Sprintf("frame length %d exceeds %d", length, maxFramePayload)}
	}
	if int64(length) > int64(len(data)-frameHeader) {
		return nil, 0, &damageError{Reason: fmt.Sprintf("truncated frame (%d of %d payload bytes)", len(data)-frameHeader, length)}
	}
	payload = data[frameHeader : frameHeader+int(length)]
	want := binary.LittleEndian.Uint32(data[4:8])
	if got := crc32.Update(crc32.Checksum(data[0:4], castagnoli), castagnoli, payload); got != want {
		return nil, 0, &damageError{Reason: fmt.Sprintf("checksum mismatch (crc32c %08x, header says %08x)", got, want)}
	}
	return payload, frameHeader + int(length), nil
}

// scanFrames calls fn for each frame of a file's content, magic included.
// It stops at the first damaged frame, or at the first frame fn rejects,
// and returns the offset just past the last frame accepted along with the
// damage. fn's payload is only valid during the call.
func scanFrames(data []byte, magic string, fn func(off int64, payload []byte) error) (end int64, damage *damageError) {
	return readFrames(bytes.NewReader(data), int64(len(data)), magic, fn)
}

// readFrames is scanFrames for a file of size bytes read as a stream, one
// frame at a time: Open reads the checkpoint so, rather than hold all of
// its bytes (about 150 MB at a million instances) beside the registry it
// builds. A read error is damage too, at the frame it stopped in.
// scanFrames is readFrames over bytes already in memory, so that there is
// one reading of frames and of their damage.
func readFrames(r io.Reader, size int64, magic string, fn func(off int64, payload []byte) error) (end int64, damage *damageError) {
	if size < int64(len(magic)) {
		return 0, &damageError{Reason: fmt.Sprintf("truncated file header (%d of %d bytes)", size, len(magic))}
	}
	br := bufio.NewReaderSize(r, int(min(size, 1<<20)))
	buf := make([]byte, len(magic), 64<<10)
	if _, err := io.ReadFull(br, buf); err != nil {
		return 0, &damageError{Reason: "read: " + err.Error()}
	}
	if string(buf) != magic {
		return 0, &damageError{Reason: fmt.Sprintf("bad file header %q, want %q", buf, magic)}
	}
	off := int64(len(magic))
	for off < size {
		// Read the frame, or as much of it as the file holds: nextFrame
		// tells a frame cut short or too long, and checks the CRC.
		buf = buf[:min(size-off, frameHeader)]
		_, err := io.ReadFull(br, buf)
		if err == nil && len(buf) == frameHeader {
			if length := int64(binary.LittleEndian.Uint32(buf[0:4])); length <= maxFramePayload {
				rest := min(length, size-off-frameHeader)
				buf = slices.Grow(buf, int(rest))[:frameHeader+rest]
				_, err = io.ReadFull(br, buf[frameHeader:])
			}
		}
		if err != nil {
			return off, &damageError{Offset: off, Reason: "read: " + err.Error()}
		}
		payload, n, derr := nextFrame(buf)
		if derr != nil {
			derr.Offset = off
			return off, derr
		}
		if err := fn(off, payload); err != nil {
			return off, &damageError{Offset: off, Reason: err.Error()}
		}
		off += int64(n)
	}
	return off, nil
}
