//! Writes a [`Network`] with its [`Weights`] as an ONNX model: NCHW float32,
//! BatchNorm folded into the preceding (transposed) convolution, SE and GC
//! blocks spelled out in primitive ops (LayerNorm too: opset 14 has none).

use anyhow::{ensure, Result};
use tract_onnx::pb;

use super::proto::{attr_float, attr_int, attr_ints, attr_string, value_info, GraphBuilder};
use crate::arch::net::{Act, Conv, Network, Node, Op};
use crate::arch::weights::Weights;

/// PyTorch's BatchNorm2d / LayerNorm epsilon.
pub const NORM_EPS: f32 = 1e-5;

/// Names and batch size of the written graph.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    /// Fixed batch dimension (the runtime runs one crop at a time).
    pub batch: u32,
    pub input_name: String,
    /// The second input of temporal nets ([`Op::Prior`]).
    pub prior_name: String,
    pub output_name: String,
    /// Graph name and doc string (e.g. the subnet JSON).
    pub graph_name: String,
    pub doc: String,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            batch: 1,
            input_name: "input".into(),
            prior_name: "prior".into(),
            output_name: "heatmaps".into(),
            graph_name: "vipnas".into(),
            doc: String::new(),
        }
    }
}

/// The ONNX model of `net` with `weights` (checked against the network first).
pub fn write_network(net: &Network, weights: &Weights, opts: &WriteOptions) -> Result<pb::ModelProto> {
    weights.check(net)?;
    ensure!(!net.nodes.is_empty(), "cannot write an empty network");
    let mut g = GraphBuilder::default();
    let mut values: Vec<String> = vec![opts.input_name.clone()];
    for node in &net.nodes {
        let inputs: Vec<&str> = node.inputs.iter().map(|&v| values[v].as_str()).collect();
        let out = match node.op {
            Op::Conv(c) => conv(&mut g, node, &c, inputs[0], weights)?,
            Op::Se { gate, .. } => se(&mut g, node, gate, inputs[0], weights)?,
            Op::Gc { .. } => gc(&mut g, node, inputs[0], weights)?,
            Op::Sum { relu } => {
                let mut acc = inputs[0].to_string();
                for (i, x) in inputs.iter().enumerate().skip(1) {
                    acc = g.node(&format!("{}/add{i}", node.name), "Add", &[&acc, x], vec![]);
                }
                if relu {
                    acc = g.node(&format!("{}/relu", node.name), "Relu", &[&acc], vec![]);
                }
                acc
            }
            Op::MaxPool { kernel, stride, pad } => {
                let (k, s, p) = (kernel as i64, stride as i64, pad as i64);
                let attrs = vec![
                    attr_ints("kernel_shape", &[k, k]),
                    attr_ints("strides", &[s, s]),
                    attr_ints("pads", &[p, p, p, p]),
                ];
                g.node(&node.name, "MaxPool", &[inputs[0]], attrs)
            }
            Op::Upsample { factor } => {
                let f = factor as f32;
                let scales = g.constant_f32(&format!("{}/scales", node.name), &[4], &[1.0, 1.0, f, f]);
                let attrs = vec![
                    attr_string("mode", "nearest"),
                    attr_string("coordinate_transformation_mode", "asymmetric"),
                    attr_string("nearest_mode", "floor"),
                ];
                g.node(&node.name, "Resize", &[inputs[0], "", &scales], attrs)
            }
            Op::Prior => opts.prior_name.clone(),
            Op::Input { index } => format!("{}{index}", opts.input_name),
            Op::Concat => g.node(&node.name, "Concat", &inputs, vec![attr_int("axis", 1)]),
            Op::Product => g.node(&node.name, "Mul", &inputs, vec![]),
        };
        values.push(out);
    }
    let last = values.last().expect("non-empty").clone();
    g.node(&opts.output_name, "Identity", &[&last], vec![]);
    let b = opts.batch as i64;
    let dims = |s: crate::arch::Shape| [b, s.c as i64, s.h as i64, s.w as i64];
    let mut graph_inputs = vec![value_info(&opts.input_name, &dims(net.input))];
    graph_inputs.extend(net.prior().map(|p| value_info(&opts.prior_name, &dims(p))));
    for node in &net.nodes {
        if let Op::Input { index } = node.op {
            graph_inputs.push(value_info(&format!("{}{index}", opts.input_name), &dims(node.shape)));
        }
    }
    Ok(g.finish(&opts.graph_name, graph_inputs, value_info(&opts.output_name, &dims(net.output_shape())), &opts.doc))
}

/// Conv (or ConvTranspose) with BN folded in, then its activation.
fn conv(g: &mut GraphBuilder, node: &Node, c: &Conv, x: &str, w: &Weights) -> Result<String> {
    let n = &node.name;
    let weight = w.get(&format!("{n}.weight"))?;
    let mut kernel = weight.data.clone();
    let cout = c.cout as usize;
    let mut bias = if c.bias { w.get(&format!("{n}.bias"))?.data.clone() } else { vec![0.0; cout] };
    if c.bn {
        let gamma = &w.get(&format!("{n}.bn.weight"))?.data;
        let beta = &w.get(&format!("{n}.bn.bias"))?.data;
        let mean = &w.get(&format!("{n}.bn.running_mean"))?.data;
        let var = &w.get(&format!("{n}.bn.running_var"))?.data;
        let scale: Vec<f32> = (0..cout).map(|o| gamma[o] / (var[o] + NORM_EPS).sqrt()).collect();
        let [d0, d1, kh, kw] = c.weight_shape();
        let taps = kh * kw;
        for i in 0..d0 {
            for j in 0..d1 {
                // Output channel of weight[i][j]: ConvTranspose weights are
                // (cin, cout/groups, k, k), Conv weights (cout, cin/groups, k, k).
                let o = if c.transposed { (i / (d0 / c.groups as usize)) * d1 + j } else { i };
                let start = (i * d1 + j) * taps;
                kernel[start..start + taps].iter_mut().for_each(|v| *v *= scale[o]);
            }
        }
        for o in 0..cout {
            bias[o] = (bias[o] - mean[o]) * scale[o] + beta[o];
        }
    }
    let kw_name = g.constant_f32(&format!("{n}.weight"), &weight.shape, &kernel);
    let has_bias = c.bias || c.bn;
    let b_name = if has_bias { g.constant_f32(&format!("{n}.bias"), &[cout], &bias) } else { String::new() };
    let (k, s, p) = (c.kernel as i64, c.stride as i64, c.pad as i64);
    let attrs = vec![
        attr_ints("kernel_shape", &[k, k]),
        attr_ints("strides", &[s, s]),
        attr_ints("pads", &[p, p, p, p]),
        attr_ints("dilations", &[1, 1]),
        attr_int("group", c.groups as i64),
    ];
    let op = if c.transposed { "ConvTranspose" } else { "Conv" };
    let mut inputs = vec![x, kw_name.as_str()];
    if has_bias {
        inputs.push(&b_name);
    }
    let y = g.node(&format!("{n}/conv"), op, &inputs, attrs);
    Ok(match c.act {
        Some(act) => activation(g, &format!("{n}/act"), act, &y),
        None => y,
    })
}

fn activation(g: &mut GraphBuilder, name: &str, act: Act, x: &str) -> String {
    match act {
        Act::Relu => g.node(name, "Relu", &[x], vec![]),
        Act::HSwish => g.node(name, "HardSwish", &[x], vec![]),
        Act::HSigmoid => {
            g.node(name, "HardSigmoid", &[x], vec![attr_float("alpha", 1.0 / 6.0), attr_float("beta", 0.5)])
        }
        Act::Sigmoid => g.node(name, "Sigmoid", &[x], vec![]),
    }
}

/// A 1×1 conv with bias, weights taken as they are.
fn fc(g: &mut GraphBuilder, node: &Node, part: &str, x: &str, w: &Weights) -> Result<String> {
    let n = &node.name;
    let weight = w.get(&format!("{n}.{part}.weight"))?;
    let bias = w.get(&format!("{n}.{part}.bias"))?;
    let wn = g.constant_f32(&format!("{n}.{part}.weight"), &weight.shape, &weight.data);
    let bn = g.constant_f32(&format!("{n}.{part}.bias"), &bias.shape, &bias.data);
    Ok(g.node(&format!("{n}/{part}"), "Conv", &[x, &wn, &bn], vec![attr_ints("kernel_shape", &[1, 1])]))
}

fn se(g: &mut GraphBuilder, node: &Node, gate: Act, x: &str, w: &Weights) -> Result<String> {
    let n = &node.name;
    let pooled = g.node(&format!("{n}/pool"), "GlobalAveragePool", &[x], vec![]);
    let y = fc(g, node, "fc1", &pooled, w)?;
    let y = g.node(&format!("{n}/relu"), "Relu", &[&y], vec![]);
    let y = fc(g, node, "fc2", &y, w)?;
    let gate = activation(g, &format!("{n}/gate"), gate, &y);
    Ok(g.node(&format!("{n}/scale"), "Mul", &[x, &gate], vec![]))
}

/// GCNet context block, attention pooling and channel-add fusion.
fn gc(g: &mut GraphBuilder, node: &Node, x: &str, w: &Weights) -> Result<String> {
    let n = &node.name;
    let mask = fc(g, node, "mask", x, w)?; // N×1×H×W
    let flat_mask_shape = g.constant_i64(&format!("{n}/mask_shape"), &[0, 1, -1]);
    let m = g.node(&format!("{n}/mask_flat"), "Reshape", &[&mask, &flat_mask_shape], vec![]);
    let m = g.node(&format!("{n}/softmax"), "Softmax", &[&m], vec![attr_int("axis", 2)]);
    let column_shape = g.constant_i64(&format!("{n}/column_shape"), &[0, -1, 1]);
    let m = g.node(&format!("{n}/weights"), "Reshape", &[&m, &column_shape], vec![]); // N×HW×1
    let flat_shape = g.constant_i64(&format!("{n}/flat_shape"), &[0, 0, -1]);
    let xf = g.node(&format!("{n}/x_flat"), "Reshape", &[x, &flat_shape], vec![]); // N×C×HW
    let ctx = g.node(&format!("{n}/context"), "MatMul", &[&xf, &m], vec![]); // N×C×1
    let map_shape = g.constant_i64(&format!("{n}/map_shape"), &[0, 0, 1, 1]);
    let ctx = g.node(&format!("{n}/context_map"), "Reshape", &[&ctx, &map_shape], vec![]);
    let y = fc(g, node, "fc1", &ctx, w)?;
    let y = layer_norm(g, node, &y, w)?;
    let y = g.node(&format!("{n}/relu"), "Relu", &[&y], vec![]);
    let y = fc(g, node, "fc2", &y, w)?;
    Ok(g.node(&format!("{n}/add"), "Add", &[x, &y], vec![]))
}

/// LayerNorm over (C, 1, 1) of an N×C×1×1 tensor, in primitive ops.
fn layer_norm(g: &mut GraphBuilder, node: &Node, x: &str, w: &Weights) -> Result<String> {
    let n = &node.name;
    let gamma = w.get(&format!("{n}.ln.weight"))?;
    let beta = w.get(&format!("{n}.ln.bias"))?;
    let c = gamma.data.len();
    let axes = || vec![attr_ints("axes", &[1, 2, 3]), attr_int("keepdims", 1)];
    let mean = g.node(&format!("{n}/ln_mean"), "ReduceMean", &[x], axes());
    let d = g.node(&format!("{n}/ln_center"), "Sub", &[x, &mean], vec![]);
    let d2 = g.node(&format!("{n}/ln_square"), "Mul", &[&d, &d], vec![]);
    let var = g.node(&format!("{n}/ln_var"), "ReduceMean", &[&d2], axes());
    let eps = g.constant_f32(&format!("{n}/ln_eps"), &[], &[NORM_EPS]);
    let var = g.node(&format!("{n}/ln_var_eps"), "Add", &[&var, &eps], vec![]);
    let std = g.node(&format!("{n}/ln_std"), "Sqrt", &[&var], vec![]);
    let y = g.node(&format!("{n}/ln_norm"), "Div", &[&d, &std], vec![]);
    let gn = g.constant_f32(&format!("{n}.ln.weight"), &[1, c, 1, 1], &gamma.data);
    let bn = g.constant_f32(&format!("{n}.ln.bias"), &[1, c, 1, 1], &beta.data);
    let y = g.node(&format!("{n}/ln_scale"), "Mul", &[&y, &gn], vec![]);
    Ok(g.node(&format!("{n}/ln_shift"), "Add", &[&y, &bn], vec![]))
}
