// `sqlx::migrate!` embeds the migration files at compile time; on stable Rust it cannot tell Cargo
// to rebuild when one is added or changed, so this does.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
