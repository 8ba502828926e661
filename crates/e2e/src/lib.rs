//! weft's end-to-end tests, in `tests/`: whole labs brought up on this machine (nodes and pods as
//! network namespaces, the lab's API server and daemons) and driven from outside the way users
//! drive them, through the real `weft` binary, kubectl, helm and the Python Kubernetes client:
//! lab lifecycle, multi-node networking in both modes, Services, EndpointSlices, the API server
//! under faults and limits, kubectl compatibility. They need root; each test's lab has its own
//! name and state directory and is torn down in `Drop` by the harness in `weft-testutil`. The
//! library is empty: this crate exists so that the cluster tests sit in one place of their own,
//! not inside the `weft` command's crate.
