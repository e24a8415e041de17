//! COCO person-keypoint files: ground truth (`images`, `annotations`,
//! `categories`) and results (`image_id`, `category_id`, `keypoints`, `score`),
//! read with errors that name the file and the offending item.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::coco::{KEYPOINTS, KEYPOINT_NAMES, SKELETON};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CocoImage {
    pub id: u64,
    pub file_name: String,
    pub width: u32,
    pub height: u32,
    /// Position in its video (our datasets and pose2sim's have it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_index: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CocoAnnotation {
    pub id: u64,
    pub image_id: u64,
    pub category_id: u64,
    /// 17 × (x, y, v), COCO pixel convention (the centre of pixel i is i).
    pub keypoints: Vec<f64>,
    #[serde(default)]
    pub num_keypoints: u32,
    pub bbox: [f64; 4],
    #[serde(default)]
    pub area: f64,
    #[serde(default)]
    pub iscrowd: u8,
    /// Marks the tracked subject where a frame shows several people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_primary: Option<u8>,
    /// Our extension (COCO tools ignore it): a training weight in [0, 1] per
    /// keypoint, e.g. the teacher's confidence where `vipnas data fill` added
    /// the keypoint; absent, every labelled keypoint weighs 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keypoint_weights: Option<Vec<f64>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CocoCategory {
    pub id: u64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keypoints: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skeleton: Option<Vec<[u32; 2]>>,
}

impl CocoCategory {
    /// COCO's person category (id 1): its 17 keypoint names and the skeleton
    /// (1-based, as COCO writes it).
    pub fn person() -> CocoCategory {
        CocoCategory {
            id: 1,
            name: "person".into(),
            keypoints: Some(KEYPOINT_NAMES.iter().map(|s| s.to_string()).collect()),
            skeleton: Some(SKELETON.iter().map(|&(a, b)| [a as u32 + 1, b as u32 + 1]).collect()),
        }
    }
}

/// A ground-truth file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CocoDataset {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licenses: Option<serde_json::Value>,
    pub images: Vec<CocoImage>,
    pub annotations: Vec<CocoAnnotation>,
    pub categories: Vec<CocoCategory>,
}

/// One detection in a results file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CocoResult {
    pub image_id: u64,
    pub category_id: u64,
    pub keypoints: Vec<f64>,
    pub score: f64,
}

impl CocoDataset {
    /// Reads and checks a ground-truth file.
    pub fn load(path: &Path) -> Result<CocoDataset> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text).with_context(|| path.display().to_string())
    }

    /// A ground-truth file's JSON, checked.
    pub fn parse(text: &str) -> Result<CocoDataset> {
        let d: CocoDataset = serde_json::from_str(text).context("not a COCO keypoint file")?;
        d.check()?;
        Ok(d)
    }

    /// Keypoint arrays of 51 finite values, known image and category ids, unique ids.
    pub fn check(&self) -> Result<()> {
        if self.categories.is_empty() {
            bail!("`categories` is empty");
        }
        let mut ids = HashSet::new();
        for (i, im) in self.images.iter().enumerate() {
            if !ids.insert(im.id) {
                bail!("images[{i}]: duplicate id {}", im.id);
            }
        }
        let cats: HashSet<u64> = self.categories.iter().map(|c| c.id).collect();
        let mut ann_ids = HashSet::new();
        for (i, a) in self.annotations.iter().enumerate() {
            let item = format!("annotations[{i}] (id {})", a.id);
            if a.keypoints.len() != 3 * KEYPOINTS {
                bail!("{item}: `keypoints` has {} values, expected {}", a.keypoints.len(), 3 * KEYPOINTS);
            }
            if a.keypoints.iter().chain(&a.bbox).any(|v| !v.is_finite()) {
                bail!("{item}: non-finite keypoint or bbox value");
            }
            if let Some(w) = &a.keypoint_weights {
                if w.len() != KEYPOINTS || w.iter().any(|v| !(0.0..=1.0).contains(v)) {
                    bail!("{item}: `keypoint_weights` must be {KEYPOINTS} values in [0, 1]");
                }
            }
            if !ids.contains(&a.image_id) {
                bail!("{item}: image_id {} is not in `images`", a.image_id);
            }
            if !cats.contains(&a.category_id) {
                bail!("{item}: category_id {} is not in `categories`", a.category_id);
            }
            if !ann_ids.insert(a.id) {
                bail!("{item}: duplicate annotation id");
            }
        }
        Ok(())
    }

    /// Images in video order: by `frame_index` when all have one, else by file name.
    pub fn images_in_order(&self) -> Vec<&CocoImage> {
        let mut v: Vec<&CocoImage> = self.images.iter().collect();
        if v.iter().all(|i| i.frame_index.is_some()) {
            v.sort_by_key(|i| (i.frame_index, i.id));
        } else {
            v.sort_by(|a, b| a.file_name.cmp(&b.file_name));
        }
        v
    }

    /// Annotations per image id.
    pub fn by_image(&self) -> HashMap<u64, Vec<&CocoAnnotation>> {
        let mut m: HashMap<u64, Vec<&CocoAnnotation>> = HashMap::new();
        for a in &self.annotations {
            m.entry(a.image_id).or_default().push(a);
        }
        m
    }

    /// The same dataset keeping only `is_primary` annotations (where marked).
    pub fn primary_only(&self) -> CocoDataset {
        let mut d = self.clone();
        d.annotations.retain(|a| a.is_primary != Some(0));
        d
    }
}

impl CocoDataset {
    /// Several datasets as one: image and annotation ids renumbered from 1,
    /// file names prefixed with each part's directory (relative to a common root).
    pub fn merge(parts: &[(CocoDataset, String)]) -> Result<CocoDataset> {
        let mut out = CocoDataset {
            info: Some(serde_json::json!({"description": "merged by vipnas data merge"})),
            licenses: None,
            images: Vec::new(),
            annotations: Vec::new(),
            categories: parts.first().map(|(d, _)| d.categories.clone()).unwrap_or_default(),
        };
        for (d, prefix) in parts {
            let mut new_id = HashMap::new();
            for im in &d.images {
                let id = out.images.len() as u64 + 1;
                new_id.insert(im.id, id);
                let file_name = if prefix.is_empty() {
                    im.file_name.clone()
                } else {
                    format!("{}/{}", prefix.trim_end_matches('/'), im.file_name)
                };
                out.images.push(CocoImage { id, file_name, ..im.clone() });
            }
            for a in &d.annotations {
                let id = out.annotations.len() as u64 + 1;
                out.annotations.push(CocoAnnotation { id, image_id: new_id[&a.image_id], ..a.clone() });
            }
        }
        out.check()?;
        Ok(out)
    }
}

/// Reads and checks a results file against its ground truth: known image
/// ids, 51 finite keypoint values, finite scores. Errors name the entry.
pub fn load_results(path: &Path, gt: &CocoDataset) -> Result<Vec<CocoResult>> {
    /// Python writes NaN/Infinity as bare tokens, which JSON lacks: they are
    /// read as null here so the entry can be named.
    #[derive(Deserialize)]
    struct Raw {
        image_id: u64,
        category_id: u64,
        keypoints: Vec<Option<f64>>,
        score: Option<f64>,
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = text.replace("-Infinity", "null").replace("Infinity", "null").replace("NaN", "null");
    let raw: Vec<Raw> =
        serde_json::from_str(&text).with_context(|| format!("{}: not a COCO keypoint results file", path.display()))?;
    let results = raw
        .into_iter()
        .map(|r| CocoResult {
            image_id: r.image_id,
            category_id: r.category_id,
            keypoints: r.keypoints.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect(),
            score: r.score.unwrap_or(f64::NAN),
        })
        .collect::<Vec<_>>();
    check_results(&results, gt).with_context(|| path.display().to_string())?;
    Ok(results)
}

pub fn check_results(results: &[CocoResult], gt: &CocoDataset) -> Result<()> {
    let ids: HashSet<u64> = gt.images.iter().map(|i| i.id).collect();
    for (i, r) in results.iter().enumerate() {
        if !ids.contains(&r.image_id) {
            bail!("results[{i}]: image_id {} is not in the ground truth", r.image_id);
        }
        if r.keypoints.len() != 3 * KEYPOINTS {
            bail!(
                "results[{i}] (image {}): `keypoints` has {} values, expected {}",
                r.image_id,
                r.keypoints.len(),
                3 * KEYPOINTS
            );
        }
        if !r.score.is_finite() || r.keypoints.iter().any(|v| !v.is_finite()) {
            bail!("results[{i}] (image {}): NaN or infinite score or coordinate", r.image_id);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> serde_json::Value {
        serde_json::json!({
            "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "keypoints": vec![1.0; 51], "bbox": [0, 0, 5, 5], "area": 25.0, "num_keypoints": 17}],
            "categories": [{"id": 1, "name": "person"}]
        })
    }

    /// Loads `v` from a file of its own: tests run in parallel, and two writing
    /// the same path raced (one read the other's half-written file).
    fn load(v: &serde_json::Value) -> Result<CocoDataset> {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("gt.json");
        std::fs::write(&p, v.to_string()).unwrap();
        CocoDataset::load(&p)
    }

    #[test]
    fn malformed_ground_truth_names_file_and_item() {
        load(&minimal()).unwrap();
        let mut v = minimal();
        v.as_object_mut().unwrap().remove("images");
        let e = format!("{:#}", load(&v).unwrap_err());
        assert!(e.contains(".json: not a COCO keypoint file: missing field `images`"), "{e}");
        let mut v = minimal();
        v["annotations"][0]["keypoints"] = serde_json::json!(vec![1.0; 50]);
        let e = format!("{:#}", load(&v).unwrap_err());
        assert!(e.contains("annotations[0] (id 5): `keypoints` has 50 values, expected 51"), "{e}");
        let mut v = minimal();
        v["annotations"][0]["image_id"] = 9.into();
        assert!(format!("{:#}", load(&v).unwrap_err()).contains("image_id 9 is not in `images`"));
    }

    #[test]
    fn merge_renumbers_and_prefixes() {
        let a = load(&minimal()).unwrap();
        let m = CocoDataset::merge(&[(a.clone(), "cam01".into()), (a, String::new())]).unwrap();
        assert_eq!(
            m.images.iter().map(|i| (i.id, i.file_name.as_str())).collect::<Vec<_>>(),
            [(1, "cam01/a.jpg"), (2, "a.jpg")]
        );
        assert_eq!(m.annotations.iter().map(|a| (a.id, a.image_id)).collect::<Vec<_>>(), [(1, 1), (2, 2)]);
    }

    #[test]
    fn bad_results_are_rejected_with_the_entry_named() {
        let gt = load(&minimal()).unwrap();
        let ok = CocoResult { image_id: 1, category_id: 1, keypoints: vec![0.0; 51], score: 0.5 };
        check_results(std::slice::from_ref(&ok), &gt).unwrap();
        let mut nan = ok.clone();
        nan.keypoints[7] = f64::NAN;
        let e = check_results(&[ok.clone(), nan], &gt).unwrap_err().to_string();
        assert_eq!(e, "results[1] (image 1): NaN or infinite score or coordinate");
        let unknown = CocoResult { image_id: 2, ..ok };
        assert!(check_results(&[unknown], &gt)
            .unwrap_err()
            .to_string()
            .contains("image_id 2 is not in the ground truth"));
        // NaN as Python's json module writes it.
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("nan-results.json");
        let kps: Vec<String> = (0..51).map(|i| if i == 4 { "NaN".into() } else { "1.0".into() }).collect();
        let text =
            format!("[{{\"image_id\": 1, \"category_id\": 1, \"keypoints\": [{}], \"score\": 0.9}}]", kps.join(", "));
        std::fs::write(&p, text).unwrap();
        let e = format!("{:#}", load_results(&p, &gt).unwrap_err());
        assert!(e.contains("nan-results.json: results[0] (image 1): NaN"), "{e}");
    }
}
