package benchenv

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"
)

// BuildWorkloadImage builds tag FROM scratch holding the static binary bin
// as /workload (the entrypoint), labelled label=1 so that it can be told
// apart. It uses the legacy builder, which needs no registry: nothing is
// pulled for scratch.
func BuildWorkloadImage(ctx context.Context, cli *client.Client, tag, label, bin string) error {
	data, err := os.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("reading the workload binary: %w", err)
	}
	dockerfile := fmt.Sprintf("FROM scratch\nLABEL %s=1\nCOPY workload /workload\nENTRYPOINT [\"/workload\"]\n", label)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, []byte(dockerfile)}, {"workload", 0o755, data}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return fmt.Errorf("writing the build context: %w", err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return fmt.Errorf("writing the build context: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("writing the build context: %w", err)
	}

	res, err := cli.ImageBuild(ctx, &buf, client.ImageBuildOptions{
		Tags:        []string{tag},
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
	})
	if err != nil {
		return fmt.Errorf("building %s: %w", tag, err)
	}
	defer res.Body.Close()
	// The build reports failure inside its JSON stream, not by status code.
	dec := json.NewDecoder(res.Body)
	for {
		var msg struct {
			Error string `json:"error"`
		}
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading the build output of %s: %w", tag, err)
		}
		if msg.Error != "" {
			return fmt.Errorf("building %s: %s", tag, msg.Error)
		}
	}
}
