mod introspect;
