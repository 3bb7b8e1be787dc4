// Command pss checks every pod template in rendered Kubernetes manifests
// against a Pod Security Standard level, with the evaluator the API server's
// PodSecurity admission itself runs (k8s.io/pod-security-admission/policy).
//
//	go run ./tests/deploy/pss -level restricted -version latest rendered.yaml...
//
// It prints one line per workload (PASS, or each forbidding check with its
// reason) and exits 1 when any workload is refused at that level.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	psapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	"sigs.k8s.io/yaml"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type podTemplate struct {
	name string
	meta *metav1.ObjectMeta
	spec *corev1.PodSpec
}

func run(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("pss", flag.ContinueOnError)
	flags.SetOutput(stderr)
	level := flags.String("level", "restricted", "privileged, baseline or restricted")
	version := flags.String("version", "latest", "policy version: latest or v1.N")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	lv, err := psapi.ParseLevel(*level)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	ver, err := psapi.ParseVersion(*version)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	var templates []podTemplate
	for _, path := range flags.Args() {
		found, err := readTemplates(path)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", path, err)
			return 2
		}
		templates = append(templates, found...)
	}
	if len(templates) == 0 {
		fmt.Fprintln(stderr, "pss: no pod template in", flags.Args())
		return 2
	}
	failed := 0
	for _, t := range templates {
		results := evaluator.EvaluatePod(psapi.LevelVersion{Level: lv, Version: ver}, t.meta, t.spec)
		allowed := true
		for _, r := range results {
			if !r.Allowed {
				allowed = false
				fmt.Fprintf(stdout, "FAIL %s: %s (%s)\n", t.name, r.ForbiddenReason, r.ForbiddenDetail)
			}
		}
		if allowed {
			fmt.Fprintf(stdout, "PASS %s: Pod Security Standard %q (%s), %d init/sidecar + %d containers\n",
				t.name, *level, *version, len(t.spec.InitContainers), len(t.spec.Containers))
		} else {
			failed++
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", len(templates)-failed, failed)
	if failed > 0 {
		return 1
	}
	return 0
}

// readTemplates returns the pod templates of every workload in a multi-document YAML file.
func readTemplates(path string) ([]podTemplate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []podTemplate
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var head metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return nil, err
		}
		switch head.Kind {
		case "Deployment":
			var d appsv1.Deployment
			if err := yaml.UnmarshalStrict(doc, &d); err != nil {
				return nil, err
			}
			out = append(out, podTemplate{"Deployment/" + d.Name, &d.Spec.Template.ObjectMeta, &d.Spec.Template.Spec})
		case "StatefulSet":
			var s appsv1.StatefulSet
			if err := yaml.UnmarshalStrict(doc, &s); err != nil {
				return nil, err
			}
			out = append(out, podTemplate{"StatefulSet/" + s.Name, &s.Spec.Template.ObjectMeta, &s.Spec.Template.Spec})
		case "DaemonSet":
			var s appsv1.DaemonSet
			if err := yaml.UnmarshalStrict(doc, &s); err != nil {
				return nil, err
			}
			out = append(out, podTemplate{"DaemonSet/" + s.Name, &s.Spec.Template.ObjectMeta, &s.Spec.Template.Spec})
		case "Job":
			var j batchv1.Job
			if err := yaml.UnmarshalStrict(doc, &j); err != nil {
				return nil, err
			}
			out = append(out, podTemplate{"Job/" + j.Name, &j.Spec.Template.ObjectMeta, &j.Spec.Template.Spec})
		case "Pod":
			var p corev1.Pod
			if err := yaml.UnmarshalStrict(doc, &p); err != nil {
				return nil, err
			}
			out = append(out, podTemplate{"Pod/" + p.Name, &p.ObjectMeta, &p.Spec})
		}
	}
}
