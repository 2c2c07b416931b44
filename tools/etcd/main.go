// Command etcd is the etcd server, built from the pinned go.etcd.io/etcd/server/v3 module.
//
// etcd's own main package lives in a module (go.etcd.io/etcd/v3) that the Go proxy serves
// without its server sources, so this wrapper calls the same entry point upstream's main does.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
