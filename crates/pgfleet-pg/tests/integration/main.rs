mod converge;
mod introspect;
mod proptests;
