//! A container running as a non-root user works through the plugin although the root and the
//! volume directories above its mount root are private (0700).

use super::{docker_ok, Scope, BUSYBOX};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

#[test]
fn non_root_container_uses_a_volume_under_a_private_root() {
    let s = Scope::new("nonroot");
    let vol = s.volume("nr");
    let mount = format!("{vol}:/data");
    let run = |user: &[&str], script: &str| {
        let args = [
            &["run", "--rm"][..],
            user,
            &["--volume-driver", s.driver(), "-v", &mount, BUSYBOX],
            &["sh", "-c", script],
        ]
        .concat();
        docker_ok(&args)
    };
    // The image's root hands the volume to uid 999, as a database entrypoint does.
    run(&[], "chown 999:999 /data && chmod 0750 /data");
    let out = run(
        &["--user", "999:999"],
        "echo hi > /data/f && mkdir /data/d && cat /data/f && id -u",
    );
    assert_eq!(out, "hi\n999\n");
    let root = s.root();
    let live = s.live(&vol);
    for dir in [
        root.to_path_buf(),
        root.join(&vol),
        root.join(&vol).join("branches"),
    ] {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700, "{dir:?}");
    }
    let md = std::fs::metadata(&live).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777), (999, 0o750));
    // Committed and reset, the mount root keeps its owner and mode; the container still works.
    s.dvol_ok(&["--volume", &vol, "commit", "-m", "as 999"]);
    s.dvol_ok(&["--volume", &vol, "reset", "--hard", "HEAD"]);
    let md = std::fs::metadata(&live).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777), (999, 0o750));
    assert_eq!(run(&["--user", "999"], "cat /data/f"), "hi\n");
}
