//! A naive, obviously-correct forward pass of a `Network` in f64, with
//! BatchNorm *unfolded*: the oracle for what the ONNX writer (which folds BN
//! and spells SE/GC/LayerNorm in primitive ops) and tract compute together.

#![allow(dead_code)]

use vipnas::arch::net::{Act, Conv, Network, Node, Op};
use vipnas::arch::Weights;

/// One image, CHW.
#[derive(Clone, Debug)]
pub struct Map {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub data: Vec<f64>,
}

impl Map {
    fn zeros(c: usize, h: usize, w: usize) -> Map {
        Map { c, h, w, data: vec![0.0; c * h * w] }
    }
    fn at(&self, c: usize, y: usize, x: usize) -> f64 {
        self.data[(c * self.h + y) * self.w + x]
    }
    fn idx(&self, c: usize, y: usize, x: usize) -> usize {
        (c * self.h + y) * self.w + x
    }
}

fn p(w: &Weights, name: &str) -> Vec<f64> {
    w.get(name).unwrap().data.iter().map(|&v| v as f64).collect()
}

fn act(a: Act, x: f64) -> f64 {
    match a {
        Act::Relu => x.max(0.0),
        Act::HSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        Act::HSigmoid => (x + 3.0).clamp(0.0, 6.0) / 6.0,
        Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
    }
}

fn conv(node: &Node, c: &Conv, x: &Map, w: &Weights, out: &Map) -> Map {
    let n = &node.name;
    let weight = p(w, &format!("{n}.weight"));
    let (k, s, pad, g) = (c.kernel as usize, c.stride as usize, c.pad as usize, c.groups as usize);
    let (cin_g, cout_g) = (c.cin as usize / g, c.cout as usize / g);
    let mut y = Map::zeros(out.c, out.h, out.w);
    if c.transposed {
        // weight: cin × cout/g × k × k; y[o, iy*s - pad + ky, ...] += x[i, iy, ix] * w
        for i in 0..x.c {
            let grp = i / cin_g;
            for oj in 0..cout_g {
                let o = grp * cout_g + oj;
                for iy in 0..x.h {
                    for ix in 0..x.w {
                        let v = x.at(i, iy, ix);
                        for ky in 0..k {
                            for kx in 0..k {
                                let oy = (iy * s + ky) as isize - pad as isize;
                                let ox = (ix * s + kx) as isize - pad as isize;
                                if oy < 0 || ox < 0 || oy >= y.h as isize || ox >= y.w as isize {
                                    continue;
                                }
                                let wi = ((i * cout_g + oj) * k + ky) * k + kx;
                                let id = y.idx(o, oy as usize, ox as usize);
                                y.data[id] += v * weight[wi];
                            }
                        }
                    }
                }
            }
        }
    } else {
        for o in 0..y.c {
            let grp = o / cout_g;
            for oy in 0..y.h {
                for ox in 0..y.w {
                    let mut acc = 0.0;
                    for ij in 0..cin_g {
                        let i = grp * cin_g + ij;
                        for ky in 0..k {
                            let iy = (oy * s + ky) as isize - pad as isize;
                            if iy < 0 || iy >= x.h as isize {
                                continue;
                            }
                            for kx in 0..k {
                                let ix = (ox * s + kx) as isize - pad as isize;
                                if ix < 0 || ix >= x.w as isize {
                                    continue;
                                }
                                acc += x.at(i, iy as usize, ix as usize) * weight[((o * cin_g + ij) * k + ky) * k + kx];
                            }
                        }
                    }
                    let id = y.idx(o, oy, ox);
                    y.data[id] = acc;
                }
            }
        }
    }
    let plane = y.h * y.w;
    if c.bias {
        let b = p(w, &format!("{n}.bias"));
        y.data.iter_mut().enumerate().for_each(|(i, v)| *v += b[i / plane]);
    }
    if c.bn {
        let (gamma, beta) = (p(w, &format!("{n}.bn.weight")), p(w, &format!("{n}.bn.bias")));
        let (mean, var) = (p(w, &format!("{n}.bn.running_mean")), p(w, &format!("{n}.bn.running_var")));
        y.data.iter_mut().enumerate().for_each(|(i, v)| {
            let o = i / plane;
            *v = (*v - mean[o]) / (var[o] + 1e-5).sqrt() * gamma[o] + beta[o];
        });
    }
    if let Some(a) = c.act {
        y.data.iter_mut().for_each(|v| *v = act(a, *v));
    }
    y
}

/// y = W x + b for a 1×1 conv on a vector.
fn fc(w: &Weights, name: &str, x: &[f64]) -> Vec<f64> {
    let (weight, bias) = (p(w, &format!("{name}.weight")), p(w, &format!("{name}.bias")));
    bias.iter()
        .enumerate()
        .map(|(o, b)| b + x.iter().enumerate().map(|(i, v)| v * weight[o * x.len() + i]).sum::<f64>())
        .collect()
}

fn forward_node(node: &Node, xs: &[&Map], w: &Weights) -> Map {
    let x = xs[0];
    let shape = node.shape;
    let out = Map::zeros(shape.c as usize, shape.h as usize, shape.w as usize);
    let plane = x.h * x.w;
    match node.op {
        Op::Conv(c) => conv(node, &c, x, w, &out),
        Op::Se { gate, .. } => {
            let pooled: Vec<f64> =
                (0..x.c).map(|c| x.data[c * plane..(c + 1) * plane].iter().sum::<f64>() / plane as f64).collect();
            let s: Vec<f64> = fc(w, &format!("{}.fc1", node.name), &pooled).into_iter().map(|v| v.max(0.0)).collect();
            let e: Vec<f64> = fc(w, &format!("{}.fc2", node.name), &s).into_iter().map(|v| act(gate, v)).collect();
            let mut y = x.clone();
            y.data.iter_mut().enumerate().for_each(|(i, v)| *v *= e[i / plane]);
            y
        }
        Op::Gc { .. } => {
            let n = &node.name;
            let (mw, mb) = (p(w, &format!("{n}.mask.weight")), p(w, &format!("{n}.mask.bias")));
            let logits: Vec<f64> =
                (0..plane).map(|q| mb[0] + (0..x.c).map(|c| x.data[c * plane + q] * mw[c]).sum::<f64>()).collect();
            let max = logits.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = logits.iter().map(|l| (l - max).exp()).sum();
            let attn: Vec<f64> = logits.iter().map(|l| (l - max).exp() / z).collect();
            let ctx: Vec<f64> = (0..x.c).map(|c| (0..plane).map(|q| x.data[c * plane + q] * attn[q]).sum()).collect();
            let t = fc(w, &format!("{n}.fc1"), &ctx);
            let mean = t.iter().sum::<f64>() / t.len() as f64;
            let var = t.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / t.len() as f64;
            let (g, b) = (p(w, &format!("{n}.ln.weight")), p(w, &format!("{n}.ln.bias")));
            let t: Vec<f64> =
                t.iter().enumerate().map(|(i, v)| ((v - mean) / (var + 1e-5).sqrt() * g[i] + b[i]).max(0.0)).collect();
            let add = fc(w, &format!("{n}.fc2"), &t);
            let mut y = x.clone();
            y.data.iter_mut().enumerate().for_each(|(i, v)| *v += add[i / plane]);
            y
        }
        Op::Sum { relu } => {
            let mut y = x.clone();
            for other in &xs[1..] {
                y.data.iter_mut().zip(&other.data).for_each(|(a, b)| *a += b);
            }
            if relu {
                y.data.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            y
        }
        Op::MaxPool { kernel, stride, pad } => {
            let mut y = out;
            for c in 0..y.c {
                for oy in 0..y.h {
                    for ox in 0..y.w {
                        let mut m = f64::NEG_INFINITY;
                        for ky in 0..kernel as usize {
                            for kx in 0..kernel as usize {
                                let iy = (oy * stride as usize + ky) as isize - pad as isize;
                                let ix = (ox * stride as usize + kx) as isize - pad as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < x.h && (ix as usize) < x.w {
                                    m = m.max(x.at(c, iy as usize, ix as usize));
                                }
                            }
                        }
                        let id = y.idx(c, oy, ox);
                        y.data[id] = m;
                    }
                }
            }
            y
        }
        Op::Concat => {
            let mut y = out;
            y.data.clear();
            xs.iter().for_each(|m| y.data.extend_from_slice(&m.data));
            y
        }
        Op::Product => {
            let mut y = x.clone();
            y.data.iter_mut().zip(&xs[1].data).for_each(|(a, b)| *a *= b);
            y
        }
        Op::Prior => unreachable!("read by forward_with_prior"),
        Op::Input { .. } => unreachable!("cut-out blocks are profiled only"),
        Op::Upsample { factor } => {
            let f = factor as usize;
            let mut y = out;
            for c in 0..y.c {
                for oy in 0..y.h {
                    for ox in 0..y.w {
                        let id = y.idx(c, oy, ox);
                        y.data[id] = x.at(c, oy / f, ox / f);
                    }
                }
            }
            y
        }
    }
}

/// The network's output for one CHW input image.
pub fn forward(net: &Network, w: &Weights, input: &[f32]) -> Map {
    forward_with_prior(net, w, input, None)
}

/// The output of a temporal net for one CHW image and its CHW prior heatmaps.
pub fn forward_with_prior(net: &Network, w: &Weights, input: &[f32], prior: Option<&[f32]>) -> Map {
    let map = |s: vipnas::arch::Shape, data: &[f32]| Map {
        c: s.c as usize,
        h: s.h as usize,
        w: s.w as usize,
        data: data.iter().map(|&v| v as f64).collect(),
    };
    let mut values = vec![map(net.input, input)];
    for node in &net.nodes {
        if node.op == Op::Prior {
            values.push(map(node.shape, prior.expect("a temporal net needs its prior")));
            continue;
        }
        let xs: Vec<&Map> = node.inputs.iter().map(|&v| &values[v]).collect();
        let y = forward_node(node, &xs, w);
        values.push(y);
    }
    values.pop().unwrap()
}
