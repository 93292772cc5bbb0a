mod converge;
mod introspect;
mod proptests;
mod robust;
mod sandbox;
