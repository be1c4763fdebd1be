//! The Kubernetes runtime's tests. [`writes`] and [`reads`] are scenarios against the
//! test API server ([`super::fixtures`]): each checks the calls the runtime makes, in
//! order, and what it does with the answers. [`pure`] checks the objects, the health
//! reading and the error classification without a server; [`cluster`] is one round
//! trip against a real cluster (ignored unless asked for).

mod cluster;
mod pure;
mod reads;
mod writes;
