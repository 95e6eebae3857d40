//! The packaged documentation: `dvol generate-assets DIR` (a packaging step, used by
//! packaging/build-deb.sh) writes a man page for `dvol` and for every command and
//! subcommand `--help` lists, and bash, zsh and fish completions that know every command.

use crate::support::Env;

/// The command names listed under "Commands:" in `dvol [ARGS] --help` (without `help`).
fn commands(env: &Env, args: &[&str]) -> Vec<String> {
    let mut a = args.to_vec();
    a.push("--help");
    let help = env.ok(&a);
    help.split("Commands:")
        .nth(1)
        .expect("a Commands: section")
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn generate_assets_writes_man_pages_for_every_command_and_completions() {
    let env = Env::new();
    let out = env.dir.path().join("assets");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_dvol"))
        .arg("generate-assets")
        .arg(&out)
        .status()
        .expect("run dvol generate-assets");
    assert!(st.success());

    let man = |page: &str| {
        let p = out.join("man").join(format!("{page}.1"));
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}: not roff"
        );
        text
    };
    assert!(man("dvol").contains("version control"));
    let top = commands(&env, &[]);
    assert!(top.len() >= 20, "{top:?}");
    for c in &top {
        man(&format!("dvol-{c}"));
    }
    for group in ["remote", "plugin"] {
        for c in commands(&env, &[group]) {
            man(&format!("dvol-{group}-{c}"));
        }
    }

    let comp = |f: &str| std::fs::read_to_string(out.join("completions").join(f)).unwrap();
    let (bash, zsh, fish) = (comp("dvol.bash"), comp("_dvol"), comp("dvol.fish"));
    assert!(zsh.starts_with("#compdef dvol"));
    for c in &top {
        assert!(bash.contains(c.as_str()), "bash completion lacks {c}");
        assert!(zsh.contains(c.as_str()), "zsh completion lacks {c}");
        assert!(
            fish.contains(&format!("-a \"{c}\"")),
            "fish completion lacks {c}"
        );
    }

    // A packaging tool, not a user command: not in --help, no man page, not completed.
    assert!(!top.iter().any(|c| c == "generate-assets"));
    assert!(!out.join("man/dvol-generate-assets.1").exists());
    for text in [&bash, &zsh, &fish] {
        assert!(!text.contains("generate-assets"));
    }
}
