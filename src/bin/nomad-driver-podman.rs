fn main() {
    println!("nomad-driver-podman");
}
