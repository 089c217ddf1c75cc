package modstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/wharfhq/wharf/npmspec"
)

// ChunkSize is the size of a closure's chunks. Larger than GridFS's default
// 255 KiB: fewer, larger chunks mean fewer round trips to the store.
const ChunkSize = 1 << 20

// The bucket has GridFS's layout (files and chunks collections, the standard
// fields), so MongoDB tools can read it, with one difference that matters on
// FerretDB: a chunk's _id is "<file id>/<n>". The drivers' GridFS reads chunks
// with a query on files_id, which FerretDB answers by scanning every chunk of
// every closure, so downloads slow down as the bucket grows; reading chunk n
// by its _id is an index lookup whatever the bucket's size.
type fileDoc struct {
	ID         bson.ObjectID `bson:"_id"`
	Length     int64         `bson:"length"`
	ChunkSize  int32         `bson:"chunkSize"`
	UploadDate time.Time     `bson:"uploadDate"`
	Filename   string        `bson:"filename"`
	Metadata   fileMeta      `bson:"metadata"`
}

type fileMeta struct {
	Module string `bson:"module"`
	SHA256 string `bson:"sha256"`
	Holder string `bson:"builder"`
}

type chunkDoc struct {
	ID      string        `bson:"_id"`
	FilesID bson.ObjectID `bson:"files_id"`
	N       int32         `bson:"n"`
	Data    []byte        `bson:"data"`
}

func chunkID(file bson.ObjectID, n int) string { return file.Hex() + "/" + strconv.Itoa(n) }

// PutClosure stores a module's closure read from src and returns its file
// id, length and sha256 (hex). The chunks go first and the file document
// last, so a file is never visible half written; a failed upload removes its
// chunks (a crash leaves orphan chunks that no file or result names).
func (s *Store) PutClosure(ctx context.Context, r npmspec.Ref, src io.Reader, holder string) (string, int64, string, error) {
	id := bson.NewObjectID()
	h := sha256.New()
	buf := make([]byte, ChunkSize)
	var size int64
	n := 0
	fail := func(err error) (string, int64, string, error) {
		if _, derr := s.chunks.DeleteMany(context.WithoutCancel(ctx), bson.D{{Key: "files_id", Value: id}}); derr != nil {
			err = errors.Join(err, derr)
		}
		return "", 0, "", fmt.Errorf("modstore: store closure of %s: %w", r, err)
	}
	for {
		k, err := io.ReadFull(src, buf)
		if k > 0 {
			h.Write(buf[:k])
			if _, ierr := s.chunks.InsertOne(ctx, chunkDoc{ID: chunkID(id, n), FilesID: id, N: int32(n), Data: buf[:k]}); ierr != nil {
				return fail(ierr)
			}
			size += int64(k)
			n++
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return fail(err)
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	doc := fileDoc{ID: id, Length: size, ChunkSize: ChunkSize, UploadDate: s.now(), Filename: r.String(),
		Metadata: fileMeta{Module: r.String(), SHA256: sum, Holder: holder}}
	if _, err := s.files.InsertOne(ctx, doc); err != nil {
		return fail(err)
	}
	return id.Hex(), size, sum, nil
}

// OpenClosure opens a stored closure for reading. The reader fetches one chunk
// at a time and fails if a chunk is missing or has the wrong size; the caller
// verifies the content against the result's sha256.
func (s *Store) OpenClosure(ctx context.Context, fileID string) (io.ReadCloser, int64, error) {
	id, err := bson.ObjectIDFromHex(fileID)
	if err != nil {
		return nil, 0, fmt.Errorf("modstore: closure id %q: %w", fileID, err)
	}
	var f fileDoc
	ok, err := findByID(ctx, s.files, id, &f)
	if err != nil {
		return nil, 0, fmt.Errorf("modstore: open closure %s: %w", fileID, err)
	}
	if !ok {
		return nil, 0, fmt.Errorf("modstore: closure %s: %w", fileID, ErrNotFound)
	}
	if f.ChunkSize <= 0 || f.Length < 0 {
		return nil, 0, fmt.Errorf("modstore: closure %s has a malformed file document", fileID)
	}
	return &chunkReader{ctx: ctx, s: s, f: f}, f.Length, nil
}

type chunkReader struct {
	ctx  context.Context
	s    *Store
	f    fileDoc
	n    int    // next chunk
	read int64  // bytes handed out so far
	buf  []byte // rest of the current chunk
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		if c.read >= c.f.Length {
			return 0, io.EOF
		}
		var ch chunkDoc
		ok, err := findByID(c.ctx, c.s.chunks, chunkID(c.f.ID, c.n), &ch)
		if err != nil {
			return 0, fmt.Errorf("modstore: read chunk %d of closure %s: %w", c.n, c.f.ID.Hex(), err)
		}
		want := min(int64(c.f.ChunkSize), c.f.Length-c.read)
		if !ok || int64(len(ch.Data)) != want {
			return 0, fmt.Errorf("modstore: closure %s: chunk %d missing or of the wrong size", c.f.ID.Hex(), c.n)
		}
		c.buf = ch.Data
		c.n++
		c.read += want
	}
	k := copy(p, c.buf)
	c.buf = c.buf[k:]
	return k, nil
}

func (c *chunkReader) Close() error { c.buf = nil; return nil }

// DeleteClosure removes a stored closure: its file document first (so it is
// never visible partly deleted), then its chunks.
func (s *Store) DeleteClosure(ctx context.Context, fileID string) error {
	id, err := bson.ObjectIDFromHex(fileID)
	if err != nil {
		return fmt.Errorf("modstore: closure id %q: %w", fileID, err)
	}
	if _, err := s.files.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
		return fmt.Errorf("modstore: delete closure %s: %w", fileID, err)
	}
	if _, err := s.chunks.DeleteMany(ctx, bson.D{{Key: "files_id", Value: id}}); err != nil {
		return fmt.Errorf("modstore: delete chunks of closure %s: %w", fileID, err)
	}
	return nil
}
