use std::fs;
use nomad_driver_podman::driver::TaskConfig;
#[test]
fn dump() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/malformed/task_config");
    let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    for p in names {
        let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(&p).unwrap()).unwrap();
        let msg = match TaskConfig::from_value(&v) { Ok(_) => "OK!!!".to_string(), Err(e) => e.to_string() };
        println!("{}\t{}", p.file_stem().unwrap().to_string_lossy(), msg);
    }
}
