//! A graph rewrite the engine makes before tract optimises a model: binary
//! ops whose constant operand holds one value repeated over a shape.
//!
//! MoveNet scales its input by `[1/127.5, 1/127.5, 1/127.5]` broadcast over
//! the channel axis of an NHWC image. tract runs such an op through its
//! general broadcasting loop (~1 ms per 192×192 frame here), but a constant
//! of one value only needs its by-scalar kernels: the constant is replaced by
//! that value in a shape of ones, which broadcasts to the same result.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;

/// Rewrites every such op of a typed `model`; returns how many.
pub fn scalarise(model: &mut TypedModel) -> TractResult<usize> {
    let mut done = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(op) = node.op_as::<TypedBinOp>() else { continue };
        let Some((slot, scalar)) = uniform_operand(model, node)? else { continue };
        let mut patch = TypedModelPatch::new("vipnas-uniform-constant");
        let mut inputs = patch.taps(model, &node.inputs)?;
        inputs[slot] = patch.add_const(format!("{}.scalar", node.name), scalar)?;
        let y = patch.wire_node(&node.name, op.clone(), &inputs)?[0];
        patch.shunt_outside(model, OutletId::new(id, 0), y)?;
        patch.apply(model)?;
        done += 1;
    }
    if done > 0 {
        *model = std::mem::take(model).into_compact()?;
    }
    Ok(done)
}

/// The slot of a constant operand of more than one value, all equal, that
/// does not shape the output (the other operand has the output's shape), with
/// that value in a shape of ones of its rank.
fn uniform_operand(model: &TypedModel, node: &TypedNode) -> TractResult<Option<(usize, Tensor)>> {
    if node.inputs.len() != 2 {
        return Ok(None);
    }
    let out = &model.outlet_fact(OutletId::new(node.id, 0))?.shape;
    for slot in 0..2 {
        let fact = model.outlet_fact(node.inputs[slot])?;
        let other = model.outlet_fact(node.inputs[1 - slot])?;
        let Some(k) = &fact.konst else { continue };
        if k.len() < 2 || other.shape != *out || k.datum_type() != f32::datum_type() {
            continue;
        }
        let view = k.try_as_plain_ram()?;
        let values = view.as_slice::<f32>()?;
        if values.iter().all(|v| v.to_bits() == values[0].to_bits()) {
            let scalar = tensor0(values[0]).broadcast_into_rank(k.rank())?;
            return Ok(Some((slot, scalar)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `x · [c, c, c]` over the last axis, as MoveNet's input scaling.
    fn scaled(values: [f32; 3]) -> TypedModel {
        let mut m = TypedModel::default();
        let x = m.add_source("x", f32::fact([1, 2, 2, 3])).unwrap();
        let k = m.add_const("k", tensor1(&values).into_shape(&[1, 1, 1, 3]).unwrap()).unwrap();
        let y = m.wire_node("mul", tract_onnx::tract_core::ops::math::mul(), &[x, k]).unwrap()[0];
        m.select_output_outlets(&[y]).unwrap();
        m
    }

    fn run(m: TypedModel) -> Vec<f32> {
        let x = Tensor::from_shape(&[1, 2, 2, 3], &(0..12).map(|v| v as f32).collect::<Vec<_>>()).unwrap();
        let out = m.into_runnable().unwrap().run(tvec!(x.into())).unwrap();
        out[0].try_as_plain_ram().unwrap().as_slice::<f32>().unwrap().to_vec()
    }

    #[test]
    fn a_uniform_constant_becomes_a_scalar_with_the_same_result() {
        let mut m = scaled([0.5; 3]);
        let want = run(m.clone());
        assert_eq!(scalarise(&mut m).unwrap(), 1);
        let k =
            m.nodes.iter().find_map(|n| n.op_as::<tract_onnx::tract_core::ops::konst::Const>()).expect("a constant");
        assert_eq!(k.val().shape(), &[1, 1, 1, 1]);
        assert_eq!(run(m), want);
    }

    #[test]
    fn a_constant_of_several_values_stays() {
        let mut m = scaled([0.5, 0.25, 0.5]);
        assert_eq!(scalarise(&mut m).unwrap(), 0);
    }
}
