//! Print the token test vectors: `cargo run -p tessera-engine --example token_vectors > docs/token-vectors.json`.

fn main() {
    let v = tessera_engine::vectors::generate();
    println!(
        "{}",
        serde_json::to_string_pretty(&v).expect("serialize vectors")
    );
}
