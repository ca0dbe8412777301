// Present so that cargo resolves this crate's [build-dependencies] (the host-side feature set).
fn main() {}
