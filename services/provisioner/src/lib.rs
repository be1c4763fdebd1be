//! berth-provisioner
