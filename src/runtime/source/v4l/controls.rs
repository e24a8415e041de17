//! V4L2 controls by name (`vipnas camera --set "Brightness=128"`): listed with
//! `VIDIOC_QUERY_EXT_CTRL`, read and written with `VIDIOC_G_CTRL`/`S_CTRL`.
//! Written on the raw ioctls so that any control type a driver reports is
//! listed (compound and unknown types are shown, not set), never a panic.

use std::ffi::CStr;
use std::io;
use std::os::raw::c_void;

use anyhow::{bail, Context, Result};
use v4l::prelude::Device;
use v4l::v4l2;
use v4l::v4l_sys::{
    v4l2_control, v4l2_query_ext_ctrl, V4L2_CTRL_FLAG_DISABLED, V4L2_CTRL_FLAG_NEXT_COMPOUND, V4L2_CTRL_FLAG_NEXT_CTRL,
    V4L2_CTRL_FLAG_WRITE_ONLY,
};

/// V4L2 control types vipnas can set (`enum v4l2_ctrl_type`).
const INTEGER: u32 = 1;
const BOOLEAN: u32 = 2;
const MENU: u32 = 3;
const BUTTON: u32 = 4;
const CTRL_CLASS: u32 = 6;
const INTEGER_MENU: u32 = 9;

/// One control as the driver describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlInfo {
    pub id: u32,
    pub name: String,
    /// `enum v4l2_ctrl_type`.
    pub kind: u32,
    pub minimum: i64,
    pub maximum: i64,
    pub default: i64,
    /// Current value, for readable simple controls.
    pub value: Option<i64>,
}

impl ControlInfo {
    /// Whether [`set`] can write it.
    pub fn settable(&self) -> bool {
        matches!(self.kind, INTEGER | BOOLEAN | MENU | BUTTON | INTEGER_MENU)
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            INTEGER => "int",
            BOOLEAN => "bool",
            MENU => "menu",
            BUTTON => "button",
            5 => "int64",
            7 => "string",
            8 => "bitmask",
            INTEGER_MENU => "intmenu",
            _ => "compound",
        }
    }
}

impl std::fmt::Display for ControlInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:<40} {:<8}", self.name, self.kind_name())?;
        if self.kind != BUTTON {
            write!(f, " {}..{} default {}", self.minimum, self.maximum, self.default)?;
        }
        if let Some(v) = self.value {
            write!(f, " value {v}")?;
        }
        Ok(())
    }
}

/// Every enabled control of the device, in driver order (class headings left out).
pub fn list(device: &Device) -> io::Result<Vec<ControlInfo>> {
    let fd = device.handle().fd();
    let mut out = Vec::new();
    // SAFETY: plain-old-data ioctl structs, zeroed as the V4L2 API expects.
    let mut q: v4l2_query_ext_ctrl = unsafe { std::mem::zeroed() };
    loop {
        q.id |= V4L2_CTRL_FLAG_NEXT_CTRL | V4L2_CTRL_FLAG_NEXT_COMPOUND;
        // SAFETY: `q` is a valid v4l2_query_ext_ctrl for this request.
        match unsafe { v4l2::ioctl(fd, v4l2::vidioc::VIDIOC_QUERY_EXT_CTRL, &mut q as *mut _ as *mut c_void) } {
            Ok(()) => {}
            // EINVAL marks the end of the list.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => break,
            Err(e) => return Err(e),
        }
        if q.type_ == CTRL_CLASS || q.flags & V4L2_CTRL_FLAG_DISABLED != 0 {
            continue;
        }
        // SAFETY: the driver NUL-terminates `name` within the array.
        let name = unsafe { CStr::from_ptr(q.name.as_ptr()) }.to_string_lossy().into_owned();
        let mut info = ControlInfo {
            id: q.id,
            name,
            kind: q.type_,
            minimum: q.minimum,
            maximum: q.maximum,
            default: q.default_value,
            value: None,
        };
        if info.settable() && info.kind != BUTTON && q.flags & V4L2_CTRL_FLAG_WRITE_ONLY == 0 {
            let mut c = v4l2_control { id: q.id, value: 0 };
            // SAFETY: `c` is a valid v4l2_control for VIDIOC_G_CTRL.
            if unsafe { v4l2::ioctl(fd, v4l2::vidioc::VIDIOC_G_CTRL, &mut c as *mut _ as *mut c_void) }.is_ok() {
                info.value = Some(c.value as i64);
            }
        }
        out.push(info);
    }
    Ok(out)
}

/// A `NAME=VALUE` (or just `NAME` for a button) control assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub name: String,
    pub value: Option<i64>,
}

impl std::str::FromStr for Assignment {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let (name, value) = match s.rsplit_once('=') {
            Some((n, v)) => {
                let v = v.trim().parse().with_context(|| format!("control `{s}`: `{v}` is not an integer"))?;
                (n.trim(), Some(v))
            }
            None => (s.trim(), None),
        };
        if name.is_empty() {
            bail!("control `{s}`: expected NAME=VALUE or NAME (a button)");
        }
        Ok(Assignment { name: name.to_string(), value })
    }
}

/// Sets a control found by name (case-insensitive); errors name the control
/// and list the ones that exist.
pub fn set(device: &Device, controls: &[ControlInfo], a: &Assignment) -> Result<()> {
    let Some(c) = controls.iter().find(|c| c.name.eq_ignore_ascii_case(&a.name)) else {
        let names: Vec<&str> = controls.iter().filter(|c| c.settable()).map(|c| c.name.as_str()).collect();
        bail!("no control named `{}` (settable: {})", a.name, names.join(", "));
    };
    if !c.settable() {
        bail!("control `{}` is a {} control: vipnas cannot set it", c.name, c.kind_name());
    }
    let value = match (c.kind, a.value) {
        (BUTTON, _) => 0,
        (_, None) => bail!("control `{}` needs a value ({}..{})", c.name, c.minimum, c.maximum),
        (_, Some(v)) if v < c.minimum || v > c.maximum => {
            bail!("control `{}`: {v} is outside {}..{}", c.name, c.minimum, c.maximum)
        }
        (_, Some(v)) => v,
    };
    let mut ctl = v4l2_control { id: c.id, value: value as i32 };
    // SAFETY: `ctl` is a valid v4l2_control for VIDIOC_S_CTRL.
    unsafe { v4l2::ioctl(device.handle().fd(), v4l2::vidioc::VIDIOC_S_CTRL, &mut ctl as *mut _ as *mut c_void) }
        .with_context(|| format!("setting control `{}` to {value}", c.name))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_parse() {
        let a: Assignment = "Percentage of Dropped Buffers=20".parse().unwrap();
        assert_eq!(a, Assignment { name: "Percentage of Dropped Buffers".into(), value: Some(20) });
        let b: Assignment = "Disconnect".parse().unwrap();
        assert_eq!(b.value, None);
        let e = "Gain=high".parse::<Assignment>().unwrap_err().to_string();
        assert_eq!(e, "control `Gain=high`: `high` is not an integer");
        assert!("=3".parse::<Assignment>().is_err());
    }
}
