//! A piece every hand-written backward step shares.

use burn_autodiff::NodeId;
use burn_autodiff::grads::Gradients;
use burn_flex::{Flex, FlexTensor};

/// Registers each gradient with its parent, for the parents that take part in the graph (`Some`
/// id) and the gradients that were computed (`Some` tensor).
pub(crate) fn register_gradients<const N: usize>(
    parents: [Option<NodeId>; N],
    gradients: [Option<FlexTensor>; N],
    grads: &mut Gradients,
) {
    for (parent, gradient) in parents.into_iter().zip(gradients) {
        if let (Some(id), Some(gradient)) = (parent, gradient) {
            grads.register::<Flex>(id, gradient);
        }
    }
}
