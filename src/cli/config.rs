//! `vipnas run --config FILE`: a TOML file of `run`'s options, so a service
//! can be set up once (`/etc/vipnas/vipnas.toml`). Keys are the long option
//! names (`source`, `fps`, `no-smooth` or `no_smooth`); a flag is `true` or
//! `false`. The file's options are put on the command line before the ones
//! given there, which therefore override them. An unknown key or a bad value
//! is an error naming the file, the line and the key.
//!
//! ```toml
//! board = "rpi4"
//! source = "v4l:/dev/video0@640x480"
//! model = "/usr/share/vipnas/models/movenet-lightning"
//! out = "/var/lib/vipnas"
//! overlay = false
//! ```

use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::{CommandFactory, Parser};

use super::Cli;

/// `args` with `run --config FILE` replaced by the file's options (placed
/// right after `run`); other commands pass through unchanged.
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>> {
    let Some(run) = args.iter().skip(1).position(|a| !a.to_string_lossy().starts_with('-')).map(|i| i + 1) else {
        return Ok(args);
    };
    if args[run] != "run" {
        return Ok(args);
    }
    let mut rest: Vec<OsString> = Vec::new();
    let mut config = None;
    let mut it = args[run + 1..].iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--config" {
            config = Some(it.next().context("--config needs a FILE")?.clone());
        } else if let Some(path) = s.strip_prefix("--config=") {
            config = Some(path.into());
        } else {
            rest.push(a.clone());
        }
    }
    let Some(path) = config else { return Ok(args) };
    let from_file = options(Path::new(&path))?;
    let mut out: Vec<OsString> = args[..=run].to_vec();
    out.extend(from_file);
    out.extend(rest);
    Ok(out)
}

/// The file's options as command-line arguments, each checked by the parser.
fn options(path: &Path) -> Result<Vec<OsString>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map_or(0, |s| text[..s.start].lines().count().max(1));
        anyhow::anyhow!("{}:{line}: {}", path.display(), e.message())
    })?;
    let cmd = Cli::command();
    let run = cmd.find_subcommand("run").expect("run is a command");
    let mut out = Vec::new();
    for (key, value) in &table {
        let line = text
            .lines()
            .position(|l| l.trim_start().strip_prefix(key.as_str()).is_some_and(|r| r.trim_start().starts_with('=')))
            .map_or(0, |i| i + 1);
        let at = format!("{}:{line}: `{key}`", path.display());
        let long = key.replace('_', "-");
        let Some(arg) = run.get_arguments().find(|a| a.get_long() == Some(long.as_str()) && long != "config") else {
            bail!("{at}: not an option of `vipnas run` (see `vipnas run --help`)");
        };
        let flag = !arg.get_action().takes_values();
        let one: Vec<OsString> = match (value, flag) {
            (toml::Value::Boolean(true), true) => vec![format!("--{long}").into()],
            (toml::Value::Boolean(false), true) => vec![],
            (_, true) => bail!("{at}: a flag, `true` or `false`"),
            (toml::Value::String(s), false) => vec![format!("--{long}").into(), s.into()],
            (toml::Value::Integer(i), false) => vec![format!("--{long}").into(), i.to_string().into()],
            (toml::Value::Float(f), false) => vec![format!("--{long}").into(), f.to_string().into()],
            (v, false) => bail!("{at}: expected a string or a number, got {}", v.type_str()),
        };
        // Each option alone through the parser: a bad value is named here, with its line.
        let mut probe: Vec<OsString> = vec!["vipnas".into(), "run".into()];
        probe.extend(one.iter().cloned());
        if let Err(e) = Cli::try_parse_from(probe) {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("").trim_start_matches("error: ");
            bail!("{at}: {first}");
        }
        out.extend(one);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn with_config(text: &str, cli: &[&str]) -> Result<Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vipnas.toml");
        std::fs::write(&path, text).unwrap();
        let mut v = vec!["vipnas", "run", "--config", path.to_str().unwrap()];
        v.extend(cli);
        expand(args(&v)).map(|a| a.iter().map(|s| s.to_string_lossy().into_owned()).collect())
    }

    #[test]
    fn a_config_becomes_options_that_the_command_line_overrides() {
        let a =
            with_config("fps = 15\nsource = \"synthetic:3\"\nno_smooth = true\noverlay = false\n", &["--fps", "20"])
                .unwrap();
        // (The file's options in key order; all before the command line's.)
        assert_eq!(a, ["vipnas", "run", "--fps", "15", "--no-smooth", "--source", "synthetic:3", "--fps", "20"]);
        let cli = Cli::try_parse_from(&a).unwrap();
        let super::super::Command::Run(r) = cli.command else { panic!("run") };
        assert_eq!(format!("{r:?}").contains("fps: Some(20.0)"), true, "the command line wins: {r:?}");
        // Other commands, and run without --config, pass through.
        assert_eq!(
            expand(args(&["vipnas", "space", "--config", "x"])).unwrap(),
            args(&["vipnas", "space", "--config", "x"])
        );
        assert_eq!(
            expand(args(&["vipnas", "-v", "run", "--fps", "3"])).unwrap(),
            args(&["vipnas", "-v", "run", "--fps", "3"])
        );
    }

    #[test]
    fn bad_configs_name_file_line_and_key() {
        let e = |text: &str| with_config(text, &[]).unwrap_err().to_string();
        let msg = e("fps = 15\nframez = 3\n");
        assert!(
            msg.ends_with("vipnas.toml:2: `framez`: not an option of `vipnas run` (see `vipnas run --help`)"),
            "{msg}"
        );
        let msg = e("# budget\nfps = \"fast\"\n");
        assert!(msg.contains("vipnas.toml:2: `fps`: invalid value 'fast' for '--fps <FPS>'"), "{msg}");
        let msg = e("overlay = 1\n");
        assert!(msg.ends_with("vipnas.toml:1: `overlay`: a flag, `true` or `false`"), "{msg}");
        let msg = e("source = [1, 2]\n");
        assert!(msg.ends_with("vipnas.toml:1: `source`: expected a string or a number, got array"), "{msg}");
        let msg = e("fps = 15\nsource = \n");
        assert!(msg.contains("vipnas.toml:2: "), "{msg}");
    }

    #[test]
    fn the_packaged_config_is_valid() {
        // What the Debian package installs as /etc/vipnas/vipnas.toml.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/cross/deb/vipnas.toml");
        let a = expand(args(&["vipnas", "run", "--config", path])).unwrap();
        let a: Vec<String> = a.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        for want in ["--wait-source", "--rotate-mb", "--live", "--out", "--model", "--source"] {
            assert!(a.iter().any(|x| x == want), "{want} missing from {a:?}");
        }
        Cli::try_parse_from(&a).unwrap();
    }
}
