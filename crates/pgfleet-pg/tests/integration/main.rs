mod converge;
mod conversions;
mod introspect;
mod proptests;
mod robust;
mod sandbox;
