"""Pure tensor maths: tensors in, tensors out. No modules, hooks or state."""
